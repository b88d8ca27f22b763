/** agentstream TypeScript SDK: stream LLM agent runs over gRPC, typed from the one contract. */
import { Code, createClient as createConnectClient, type Client as ConnectClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { KEEPALIVE, traceHeaders } from "./telemetry.js";
import type { SecureClientSessionOptions } from "node:http2";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import type { Message, TaskStatus } from "./gen/agentstream/v1/message_pb.js";
import {
  OnDisconnect,
  RunnerService,
  StreamingMode,
  type CancelRunResponse,
  type Run,
  type Session,
} from "./gen/agentstream/v1/runner_service_pb.js";
import { toAgentStreamError, TransportError, type AgentStreamError } from "./errors.js";

export * from "./errors.js";
export { KEEPALIVE, traceHeaders } from "./telemetry.js";
export * from "./gen/agentstream/v1/message_pb.js";
export * from "./gen/agentstream/v1/runner_service_pb.js";

/** The topic of the terminal message, the last message of every stream. */
export const TASK_RESPONSE_TOPIC = "__task_response";

export type { Transport } from "@connectrpc/connect";

/**
 * TLS for an `https://` baseUrl, as Node's `tls.connect` takes it: PEM contents (strings or Buffers, e.g.
 * `readFileSync("ca.pem")`), not paths. `ca` replaces Node's bundled CAs for verifying the server;
 * `cert` and `key` are the client certificate for a server that requires one (mTLS).
 */
export type TlsOptions = Pick<SecureClientSessionOptions, "ca" | "cert" | "key" | "servername">;

/**
 * Where the client sends its calls: a `baseUrl` (the default gRPC transport of connect-node, HTTP/2; TLS
 * with `https://` and `tls`), or any connect-es `transport` (e.g. `createGrpcTransport({...})` with its own
 * `nodeOptions` or interceptors, `createRouterTransport(...)` in tests).
 */
export type ClientOptions = (
  | {
      /** The server, e.g. "http://127.0.0.1:50051", or "https://agents.example.com" for TLS. */
      baseUrl: string;
      /** CA and client certificate for an https:// baseUrl (without it, Node's bundled CAs verify the server). */
      tls?: TlsOptions;
      transport?: undefined;
    }
  | {
      transport: Transport;
      baseUrl?: undefined;
    }
) & {
  /** Sent as `authorization: Bearer <token>` on every call (servers started with --auth-tokens/--auth-jwks). */
  token?: string;
};

export interface StreamingRunOptions {
  input: string;
  /** Empty: the server's default agent. */
  agent?: string;
  streamingMode?: StreamingMode;
  /** Runs sharing a session id continue one conversation (one live run at a time); echoed on every message. */
  sessionId?: string;
  runId?: string;
  metadata?: Record<string, string>;
  /** The run's server-side time limit. */
  timeoutMs?: number;
  /** Chunk coalescing window; undefined: the server's default. */
  chunkWindowMs?: number;
  /** Let the run go on if this call ends early (pick it up with subscribeRun). */
  continueOnDisconnect?: boolean;
  /** Leave a reasoning model's reasoning text out of this stream (the run keeps it). */
  excludeReasoning?: boolean;
  /** Aborting cancels the call, and with it the run. */
  signal?: AbortSignal;
}

export interface ResolveInterruptOptions {
  /** The run waiting for a person (status INPUT_REQUIRED). */
  runId: string;
  /** The interrupt to answer: `InterruptPayload.interruptId` of the "interrupt" message, or `Run.pendingInterrupts`. */
  interruptId: string;
  /** TOOL_APPROVAL: true runs the calls, false makes each a failed tool result. INPUT: true answers with `message`. */
  approve: boolean;
  /** The answer to an INPUT question, or why the calls are rejected (the model reads it). */
  message?: string;
}

export interface SubscribeRunOptions {
  runId: string;
  afterSeq?: bigint | number;
  streamingMode?: StreamingMode;
  /** Leave a reasoning model's reasoning text out of this stream. */
  excludeReasoning?: boolean;
  signal?: AbortSignal;
  /**
   * Re-subscribe after a transport failure (connection lost, server restart: a TransportError with code
   * UNAVAILABLE, INTERNAL, UNKNOWN or ABORTED) from the last seq yielded, so the loop sees no duplicate
   * and no gap. Errors the server reports (RunNotFoundError, SeqOutOfRangeError, ...) and aborting
   * `signal` end the iteration at once.
   */
  resume?: boolean;
  /** Consecutive failed attempts before the last error is thrown (default 5); a message resets the count. */
  maxAttempts?: number;
  /** First pause before re-subscribing, doubled after each failure (default 100 ms). */
  initialBackoffMs?: number;
  /** Longest pause between attempts (default 2000 ms). */
  maxBackoffMs?: number;
}

const RESUMABLE_CODES = new Set([Code.Unavailable, Code.Internal, Code.Unknown, Code.Aborted]);

/** True for a failure of the connection rather than an answer of the server: worth subscribing again. */
export function isResumable(error: AgentStreamError): boolean {
  return error instanceof TransportError && RESUMABLE_CODES.has(error.code);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** An agentstream client; every method throws typed AgentStreamError subclasses. */
export interface AgentStreamClient {
  /** Start a run and yield its messages; the last one is the terminal task response. */
  streamingRun(options: StreamingRunOptions): AsyncIterable<Message>;
  /** Follow an existing run from afterSeq: replay, then live, then the terminal message. */
  subscribeRun(options: SubscribeRunOptions): AsyncIterable<Message>;
  /** Start a run without streaming it; returns its id. */
  startRun(options: Omit<StreamingRunOptions, "streamingMode" | "continueOnDisconnect" | "signal">): Promise<string>;
  cancelRun(runId: string, reason?: string): Promise<CancelRunResponse>;
  getRun(runId: string): Promise<Run>;
  /**
   * Answer a run waiting for a person, from any caller of its tenant through any replica; resolves to the run's
   * status after the decision (RUNNING, or INPUT_REQUIRED while other interrupts wait). Throws
   * InterruptNotFoundError (unknown run or interrupt) or InterruptAlreadyResolvedError (answered before, or its
   * approval timeout passed).
   */
  resolveInterrupt(options: ResolveInterruptOptions): Promise<TaskStatus>;
  /** Describe a conversation: its turns (oldest first), runs, times and live run; SessionNotFound when unknown. */
  getSession(sessionId: string): Promise<Session>;
  /** Forget a conversation; resolves to how many turns it held. SessionBusy while a run is live on it. */
  deleteSession(sessionId: string): Promise<number>;
  /** The generated Connect client, for anything this wrapper does not cover. */
  raw: ConnectClient<typeof RunnerService>;
}

async function* typed(messages: AsyncIterable<Message>): AsyncIterable<Message> {
  try {
    for await (const message of messages) yield message;
  } catch (error) {
    throw toAgentStreamError(error);
  }
}

async function call<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise;
  } catch (error) {
    throw toAgentStreamError(error);
  }
}

function grpcTransport(baseUrl: string, tls: TlsOptions | undefined): Transport {
  if (tls === undefined) return createGrpcTransport({ baseUrl, ...KEEPALIVE });
  if (!baseUrl.startsWith("https://")) {
    throw new Error(`tls options need an https:// baseUrl, not ${JSON.stringify(baseUrl)}`);
  }
  return createGrpcTransport({ baseUrl, nodeOptions: tls, ...KEEPALIVE });
}

/** Create a client over the gRPC protocol (HTTP/2) to `baseUrl`, or over a caller-supplied `transport`. */
export function createClient(options: ClientOptions): AgentStreamClient {
  const transport = options.transport ?? grpcTransport(options.baseUrl, options.tls);
  const raw = createConnectClient(RunnerService, transport);
  const auth = options.token ? { authorization: `Bearer ${options.token}` } : undefined;
  const headers = () => ({ ...traceHeaders(), ...auth }); // per call: the caller's trace context of the moment
  return {
    raw,
    streamingRun(o) {
      return typed(
        raw.streamingRun(
          {
            input: o.input,
            agent: o.agent ?? "",
            streamingMode: o.streamingMode ?? StreamingMode.CORE,
            sessionId: o.sessionId ?? "",
            runId: o.runId ?? "",
            metadata: o.metadata ?? {},
            timeout: o.timeoutMs === undefined ? undefined : durationFromMs(o.timeoutMs),
            chunkWindowMs: o.chunkWindowMs,
            onDisconnect: o.continueOnDisconnect ? OnDisconnect.CONTINUE : OnDisconnect.CANCEL,
            excludeReasoning: o.excludeReasoning ?? false,
          },
          { signal: o.signal, headers: headers() },
        ),
      );
    },
    async *subscribeRun(o) {
      const maxAttempts = o.maxAttempts ?? 5;
      const initialBackoffMs = o.initialBackoffMs ?? 100;
      const maxBackoffMs = o.maxBackoffMs ?? 2000;
      let position = BigInt(o.afterSeq ?? 0);
      let failures = 0;
      for (;;) {
        const stream = raw.subscribeRun(
          {
            runId: o.runId,
            afterSeq: position,
            streamingMode: o.streamingMode ?? StreamingMode.CORE,
            excludeReasoning: o.excludeReasoning ?? false,
          },
          { signal: o.signal, headers: headers() },
        );
        try {
          for await (const message of stream) {
            failures = 0;
            position = message.seq;
            yield message;
          }
          return;
        } catch (error) {
          const typedError = toAgentStreamError(error);
          if (!o.resume || o.signal?.aborted || !isResumable(typedError) || failures >= maxAttempts) throw typedError;
          await sleep(Math.min(maxBackoffMs, initialBackoffMs * 2 ** failures), o.signal);
          failures++;
          if (o.signal?.aborted) throw typedError;
        }
      }
    },
    async startRun(o) {
      const response = await call(
        raw.startRun(
          {
            input: o.input,
            agent: o.agent ?? "",
            sessionId: o.sessionId ?? "",
            runId: o.runId ?? "",
            metadata: o.metadata ?? {},
            timeout: o.timeoutMs === undefined ? undefined : durationFromMs(o.timeoutMs),
            chunkWindowMs: o.chunkWindowMs,
          },
          { headers: headers() },
        ),
      );
      return response.runId;
    },
    cancelRun(runId, reason = "") {
      return call(raw.cancelRun({ runId, reason }, { headers: headers() }));
    },
    getRun(runId) {
      return call(raw.getRun({ runId }, { headers: headers() }));
    },
    async resolveInterrupt(o) {
      const request = { runId: o.runId, interruptId: o.interruptId, approve: o.approve, message: o.message ?? "" };
      return (await call(raw.resolveInterrupt(request, { headers: headers() }))).status;
    },
    getSession(sessionId) {
      return call(raw.getSession({ sessionId }, { headers: headers() }));
    },
    async deleteSession(sessionId) {
      return (await call(raw.deleteSession({ sessionId }, { headers: headers() }))).deletedTurns;
    },
  };
}
