/** Checks shared by the scenario kinds of the TypeScript suite: tool results, the terminal, typed errors. */
import assert from "node:assert/strict";

import { AgentStreamError, TASK_RESPONSE_TOPIC, TaskStatus, type Message } from "../src/index.js";

export type Scenario = any;

/** The tool results of a stream, in the shape the scenarios write them. */
export function toolResults(messages: Message[]) {
  return messages.flatMap((m) =>
    m.payload.case === "toolResult"
      ? [{ tool_name: m.payload.value.toolName, content: m.payload.value.content, is_error: m.payload.value.isError }]
      : [],
  );
}

/** The last message is the terminal one with the expected status, success and (if given) answer; seqs increase. */
export function checkTerminal(messages: Message[], expect: Scenario) {
  const last = messages.at(-1)!;
  assert.equal(last.topic, TASK_RESPONSE_TOPIC);
  assert.equal(last.payload.case, "task");
  if (last.payload.case === "task") {
    assert.equal(TaskStatus[last.payload.value.status], expect.terminal.status);
    assert.equal(last.payload.value.success, expect.terminal.success);
    if (expect.terminal.answer !== undefined) assert.equal(last.payload.value.answer, expect.terminal.answer);
  }
  for (let i = 1; i < messages.length; i++) assert.ok(messages[i].seq > messages[i - 1].seq, "seq must increase");
}

/** The error is an AgentStreamError with the expected code and reason; returns it for further checks. */
export function checkError(error: unknown, want: { code: string; reason: string }): AgentStreamError {
  assert.ok(error instanceof AgentStreamError, `not an AgentStreamError: ${error}`);
  assert.equal(error.codeName, want.code);
  assert.equal(error.reason, want.reason);
  return error;
}

/** What the promise rejects with (the check fails if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the call to fail");
}
