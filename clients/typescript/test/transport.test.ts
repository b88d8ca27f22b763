/** The SDK over a caller-supplied transport (an in-process router, no server): typed errors and resume. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

import {
  AgentStreamError,
  createClient,
  ERROR_DOMAIN,
  MessageSchema,
  RunInterruptedError,
  RunNotFoundError,
  RunnerService,
  TaskStatus,
  TransportError,
  type Message,
  type SubscribeRunRequest,
} from "../src/index.js";

function errorInfo(reason: string, domain = ERROR_DOMAIN, metadata: Record<string, string> = {}): Uint8Array {
  const w = new BinaryWriter().tag(1, WireType.LengthDelimited).string(reason);
  w.tag(2, WireType.LengthDelimited).string(domain);
  for (const [k, v] of Object.entries(metadata)) {
    w.tag(3, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).string(k).tag(2, WireType.LengthDelimited).string(v);
    w.join();
  }
  return w.finish();
}

function serverError(code: Code, reason: string, domain = ERROR_DOMAIN, metadata: Record<string, string> = {}) {
  const error = new ConnectError("it went wrong", code);
  error.details.push({ type: "google.rpc.ErrorInfo", value: errorInfo(reason, domain, metadata) });
  return error;
}

function clientFailing(error: ConnectError) {
  return createClient({
    transport: createRouterTransport(({ service }) =>
      service(RunnerService, {
        getRun() {
          throw error;
        },
      }),
    ),
  });
}

test("a caller-supplied transport carries the calls", async () => {
  const client = createClient({
    transport: createRouterTransport(({ service }) =>
      service(RunnerService, { getRun: (req) => ({ runId: req.runId, agent: "a", status: TaskStatus.SUCCEEDED }) }),
    ),
  });
  const run = await client.getRun("r1");
  assert.equal(run.runId, "r1");
  assert.equal(run.status, TaskStatus.SUCCEEDED);
});

test("a reason this SDK does not know keeps the server's reason in a plain AgentStreamError", async () => {
  const client = clientFailing(serverError(Code.FailedPrecondition, "SOMETHING_NEW", ERROR_DOMAIN, { k: "v" }));
  await assert.rejects(client.getRun("r1"), (error: unknown) => {
    assert.ok(error instanceof AgentStreamError && !(error instanceof TransportError), `${error}`);
    assert.equal(error.constructor, AgentStreamError);
    assert.equal(error.reason, "SOMETHING_NEW");
    assert.equal(error.codeName, "FAILED_PRECONDITION");
    assert.deepEqual(error.metadata, { k: "v" });
    return true;
  });
});

test("a reason named like an Object.prototype member is not looked up on the prototype", async () => {
  const client = clientFailing(serverError(Code.Internal, "constructor"));
  await assert.rejects(client.getRun("r1"), (e: unknown) => e instanceof AgentStreamError && e.reason === "constructor");
});

test("RUN_INTERRUPTED maps to RunInterruptedError; another domain's reason is a TransportError", async () => {
  await assert.rejects(
    clientFailing(serverError(Code.Unavailable, "RUN_INTERRUPTED")).getRun("r1"),
    (e: unknown) => e instanceof RunInterruptedError && e.codeName === "UNAVAILABLE" && e.reason === "RUN_INTERRUPTED",
  );
  await assert.rejects(
    clientFailing(serverError(Code.Unavailable, "RUN_INTERRUPTED", "example.com")).getRun("r1"),
    (e: unknown) => e instanceof TransportError && e.reason === "",
  );
});

/** A subscribeRun backend whose calls fail as scripted; it records every request's after_seq. */
function flakyRun(total: number, failAfter: (call: number) => number | undefined, failure: (call: number) => ConnectError) {
  const requests: bigint[] = [];
  const transport = createRouterTransport(({ service }) =>
    service(RunnerService, {
      async *subscribeRun(req: SubscribeRunRequest) {
        const call = requests.push(req.afterSeq);
        const stopAt = failAfter(call);
        for (let seq = Number(req.afterSeq) + 1; seq <= total; seq++) {
          if (stopAt !== undefined && seq > stopAt) break;
          yield create(MessageSchema, {
            runId: req.runId,
            seq: BigInt(seq),
            category: seq === total ? "task" : "chunk",
            topic: seq === total ? "__task_response" : "",
          });
        }
        if (stopAt !== undefined) throw failure(call);
      },
    }),
  );
  return { client: createClient({ transport }), requests };
}

async function seqsOf(stream: AsyncIterable<Message>): Promise<number[]> {
  const out: number[] = [];
  for await (const m of stream) out.push(Number(m.seq));
  return out;
}

test("resume re-subscribes after transport errors from the last seq yielded: no duplicate, no gap", async () => {
  const cuts: Record<number, number> = { 1: 3, 2: 3, 3: 7 }; // call 2 fails before yielding anything
  const { client, requests } = flakyRun(10, (call) => cuts[call], () => new ConnectError("connection reset", Code.Unavailable));
  const seqs = await seqsOf(client.subscribeRun({ runId: "r", resume: true, initialBackoffMs: 1 }));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(requests, [0n, 3n, 3n, 7n]);
});

test("without resume, or on an error the server reports, the first error is thrown", async () => {
  const unavailable = flakyRun(10, (call) => (call === 1 ? 3 : undefined), () => new ConnectError("reset", Code.Unavailable));
  await assert.rejects(seqsOf(unavailable.client.subscribeRun({ runId: "r" })), TransportError);
  assert.equal(unavailable.requests.length, 1);
  const notFound = flakyRun(10, () => 0, () => serverError(Code.NotFound, "RUN_NOT_FOUND"));
  await assert.rejects(seqsOf(notFound.client.subscribeRun({ runId: "r", resume: true })), RunNotFoundError);
  assert.equal(notFound.requests.length, 1);
  const detailless = flakyRun(10, () => 0, () => new ConnectError("bad request", Code.InvalidArgument));
  await assert.rejects(seqsOf(detailless.client.subscribeRun({ runId: "r", resume: true })), TransportError);
  assert.equal(detailless.requests.length, 1);
});

test("resume gives up after maxAttempts consecutive failures", async () => {
  const { client, requests } = flakyRun(10, () => 0, () => new ConnectError("down", Code.Unavailable));
  await assert.rejects(
    seqsOf(client.subscribeRun({ runId: "r", resume: true, maxAttempts: 3, initialBackoffMs: 1 })),
    (e: unknown) => e instanceof TransportError && e.codeName === "UNAVAILABLE",
  );
  assert.equal(requests.length, 4); // the first call and three re-subscribes
});

test("aborting the signal during the backoff ends the iteration without another attempt", async () => {
  const { client, requests } = flakyRun(10, () => 0, () => new ConnectError("down", Code.Unavailable));
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(
    seqsOf(client.subscribeRun({ runId: "r", resume: true, initialBackoffMs: 10_000, signal: controller.signal })),
    TransportError,
  );
  assert.equal(requests.length, 1);
});
