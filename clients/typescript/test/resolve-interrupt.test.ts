/** resolveInterrupt sends the decision with the per-call headers of every call and returns the run's status. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";

import {
  createClient,
  ResolveInterruptResponseSchema,
  RunnerService,
  TaskStatus,
  type ResolveInterruptRequest,
} from "../src/index.js";

test("resolveInterrupt sends run, interrupt, decision and message with the token, and returns the status", async () => {
  const seen: [ResolveInterruptRequest, string | null][] = [];
  const transport = createRouterTransport(({ service }) => {
    service(RunnerService, {
      resolveInterrupt(request, ctx) {
        seen.push([request, ctx.requestHeader.get("authorization")]);
        return create(ResolveInterruptResponseSchema, { status: TaskStatus.RUNNING });
      },
    });
  });
  const client = createClient({ transport, token: "secret" });
  assert.equal(await client.resolveInterrupt({ runId: "r1", interruptId: "int-1", approve: true }), TaskStatus.RUNNING);
  await client.resolveInterrupt({ runId: "r1", interruptId: "int-2", approve: false, message: "not now" });
  assert.deepEqual(
    seen.map(([r, auth]) => [r.runId, r.interruptId, r.approve, r.message, auth]),
    [
      ["r1", "int-1", true, "", "Bearer secret"],
      ["r1", "int-2", false, "not now", "Bearer secret"],
    ],
  );
});
