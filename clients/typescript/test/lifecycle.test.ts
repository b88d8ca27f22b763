/** Run lifecycle RPCs through the TypeScript SDK: StartRun, SubscribeRun (resume point), CancelRun, GetRun. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, RunNotFoundError, SeqOutOfRangeError, StreamingMode, TaskStatus, type Message } from "../src/index.js";

const client = createClient({ baseUrl: `http://${process.env.AGENTSTREAM_TARGET}` });

async function collect(stream: AsyncIterable<Message>): Promise<Message[]> {
  const out: Message[] = [];
  for await (const m of stream) out.push(m);
  return out;
}

test("start, subscribe from the start and from a resume point, cancel a finished run, get it", async () => {
  const runId = await client.startRun({ input: "hello there" });
  const all = await collect(client.subscribeRun({ runId, streamingMode: StreamingMode.ALL }));
  assert.deepEqual(
    all.map((m) => Number(m.seq)),
    all.map((_, i) => i + 1),
  );
  const last = all.at(-1)!;
  assert.equal(last.payload.case === "task" && last.payload.value.answer, "You said: hello there");
  const tail = await collect(client.subscribeRun({ runId, afterSeq: 3, streamingMode: StreamingMode.ALL }));
  assert.equal(Number(tail[0].seq), 4);
  assert.equal(tail.length, all.length - 3);
  const cancelled = await client.cancelRun(runId, "late");
  assert.equal(cancelled.alreadyFinished, true);
  const run = await client.getRun(runId);
  assert.equal(run.status, TaskStatus.SUCCEEDED);
  assert.equal(run.lastSeq, last.seq);
});

test("unknown runs and positions past the end are typed errors", async () => {
  await assert.rejects(client.getRun("no-such-run"), RunNotFoundError);
  const runId = await client.startRun({ input: "hi" });
  const all = await collect(client.subscribeRun({ runId }));
  await assert.rejects(
    collect(client.subscribeRun({ runId, afterSeq: all.at(-1)!.seq + 1n })),
    (error: unknown) => error instanceof SeqOutOfRangeError && error.metadata["last_seq"] !== undefined,
  );
});
