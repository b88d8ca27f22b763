/** Tokens through the TypeScript SDK, against the interop server that requires one (see .ci/interop.sh). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, PermissionDeniedError, UnauthenticatedError } from "../src/index.js";

const target = process.env.AGENTSTREAM_INTEROP_AUTH_TARGET;
const runnerToken = process.env.AGENTSTREAM_INTEROP_RUNNER_TOKEN;
const readerToken = process.env.AGENTSTREAM_INTEROP_READER_TOKEN;

test("a token is sent on every call; none is UNAUTHENTICATED, a reader may not start runs", async () => {
  assert.ok(target && runnerToken && readerToken, "run with `make interop`, which starts a server requiring tokens");
  const baseUrl = `http://${target}`;
  await assert.rejects(createClient({ baseUrl }).getRun("no-such-run"), UnauthenticatedError);
  const runner = createClient({ baseUrl, token: runnerToken });
  const runId = await runner.startRun({ input: "hello" });
  const messages = [];
  for await (const message of runner.subscribeRun({ runId })) messages.push(message);
  assert.equal(messages.at(-1)?.topic, "__task_response");
  const reader = createClient({ baseUrl, token: readerToken });
  assert.equal((await reader.getRun(runId)).runId, runId);
  await assert.rejects(
    reader.startRun({ input: "hello" }),
    (error: unknown) => error instanceof PermissionDeniedError && error.requiredRole === "runner",
  );
});
