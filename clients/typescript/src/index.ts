/** agentstream TypeScript SDK: stream LLM agent runs over gRPC, typed from the one contract. */
import { createClient as createConnectClient, type Client as ConnectClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { durationFromMs } from "@bufbuild/protobuf/wkt";

import type { Message } from "./gen/agentstream/v1/message_pb.js";
import {
  OnDisconnect,
  RunnerService,
  StreamingMode,
  type CancelRunResponse,
  type Run,
} from "./gen/agentstream/v1/runner_service_pb.js";
import { toAgentStreamError } from "./errors.js";

export * from "./errors.js";
export * from "./gen/agentstream/v1/message_pb.js";
export * from "./gen/agentstream/v1/runner_service_pb.js";

/** The topic of the terminal message, the last message of every stream. */
export const TASK_RESPONSE_TOPIC = "__task_response";

export interface ClientOptions {
  /** The server, e.g. "http://127.0.0.1:50051". */
  baseUrl: string;
}

export interface StreamingRunOptions {
  input: string;
  /** Empty: the server's default agent. */
  agent?: string;
  streamingMode?: StreamingMode;
  sessionId?: string;
  runId?: string;
  metadata?: Record<string, string>;
  /** The run's server-side time limit. */
  timeoutMs?: number;
  /** Chunk coalescing window; undefined: the server's default. */
  chunkWindowMs?: number;
  /** Let the run go on if this call ends early (pick it up with subscribeRun). */
  continueOnDisconnect?: boolean;
  /** Aborting cancels the call, and with it the run. */
  signal?: AbortSignal;
}

export interface SubscribeRunOptions {
  runId: string;
  afterSeq?: bigint | number;
  streamingMode?: StreamingMode;
  signal?: AbortSignal;
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

/** Create a client over the gRPC protocol (HTTP/2). */
export function createClient({ baseUrl }: ClientOptions): AgentStreamClient {
  const raw = createConnectClient(RunnerService, createGrpcTransport({ baseUrl }));
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
          },
          { signal: o.signal },
        ),
      );
    },
    subscribeRun(o) {
      return typed(
        raw.subscribeRun(
          { runId: o.runId, afterSeq: BigInt(o.afterSeq ?? 0), streamingMode: o.streamingMode ?? StreamingMode.CORE },
          { signal: o.signal },
        ),
      );
    },
    async startRun(o) {
      const response = await call(
        raw.startRun({
          input: o.input,
          agent: o.agent ?? "",
          sessionId: o.sessionId ?? "",
          runId: o.runId ?? "",
          metadata: o.metadata ?? {},
          timeout: o.timeoutMs === undefined ? undefined : durationFromMs(o.timeoutMs),
          chunkWindowMs: o.chunkWindowMs,
        }),
      );
      return response.runId;
    },
    cancelRun(runId, reason = "") {
      return call(raw.cancelRun({ runId, reason }));
    },
    getRun(runId) {
      return call(raw.getRun({ runId }));
    },
  };
}
