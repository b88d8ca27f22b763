/** errorForTask: in-band failures as the same typed errors the calls throw (no server needed). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import {
  AgentStreamError,
  errorForTask,
  InternalError,
  LLMUpstreamError,
  RunInterruptedError,
  RunTimedOutError,
  TaskPayloadSchema,
  TaskStatus,
} from "../src/index.js";

test("a failed task maps by its error's reason and code", () => {
  const error = errorForTask(
    create(TaskPayloadSchema, {
      status: TaskStatus.FAILED,
      msg: "upstream said 503",
      error: { reason: "LLM_UPSTREAM_ERROR", code: "UNAVAILABLE", metadata: { http_status: "503" } },
    }),
  );
  assert.ok(error instanceof LLMUpstreamError);
  assert.equal(error.codeName, "UNAVAILABLE");
  assert.equal(error.message, "upstream said 503");
  assert.deepEqual(error.metadata, { http_status: "503" });
});

test("an unknown reason keeps the server's reason; a task without an error maps by its status", () => {
  const unknown = errorForTask(
    create(TaskPayloadSchema, { status: TaskStatus.FAILED, error: { reason: "SOMETHING_NEW", code: "ABORTED" } }),
  );
  assert.equal(unknown.constructor, AgentStreamError);
  assert.equal(unknown.reason, "SOMETHING_NEW");
  assert.equal(unknown.codeName, "ABORTED");
  const byStatus: [TaskStatus, unknown, string][] = [
    [TaskStatus.TIMED_OUT, RunTimedOutError, "DEADLINE_EXCEEDED"],
    [TaskStatus.INTERRUPTED, RunInterruptedError, "UNAVAILABLE"],
    [TaskStatus.FAILED, InternalError, "INTERNAL"],
  ];
  for (const [status, cls, code] of byStatus) {
    const error = errorForTask(create(TaskPayloadSchema, { status }));
    assert.equal(error.constructor, cls);
    assert.equal(error.codeName, code);
  }
});

test("a successful task has no error", () => {
  assert.throws(() => errorForTask(create(TaskPayloadSchema, { status: TaskStatus.SUCCEEDED, success: true })), TypeError);
});
