/**
 * The shared `approval` scenario through the TypeScript SDK: stream a run whose tool call waits for a person,
 * resolve it from a second client (its own connection), check the resolution, the tool result and the
 * terminal; resolving twice, or an unknown interrupt, is a typed error.
 */
import assert from "node:assert/strict";

import {
  AgentStreamError,
  createClient,
  InterruptAlreadyResolvedError,
  InterruptKind,
  StreamingMode,
  TaskStatus,
  type AgentStreamClient,
  type ClientOptions,
  type Message,
} from "../src/index.js";

type Scenario = any;

function checkError(error: unknown, want: { code: string; reason: string }): AgentStreamError {
  assert.ok(error instanceof AgentStreamError, `not an AgentStreamError: ${error}`);
  assert.equal(error.codeName, want.code);
  assert.equal(error.reason, want.reason);
  return error;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the call to fail");
}

/** Each variant on a fresh run; `options` connects a client (each createClient opens its own connection). */
export async function runApprovalScenario(s: Scenario, options: ClientOptions) {
  for (const variant of s.approval.variants) {
    await runVariant(s, variant, createClient(options), createClient(options));
  }
}

async function runVariant(s: Scenario, variant: Scenario, streaming: AgentStreamClient, deciding: AgentStreamClient) {
  const spec = s.approval;
  const want = variant.expect;
  const messages: Message[] = [];
  let interruptId = "";
  const stream = streaming.streamingRun({
    input: s.input,
    agent: s.agent,
    streamingMode: StreamingMode[(s.mode ?? "CORE") as keyof typeof StreamingMode],
    signal: AbortSignal.timeout(30_000),
  });
  for await (const msg of stream) {
    messages.push(msg);
    if (msg.topic !== "interrupt" || msg.payload.case !== "interrupt") continue;
    const interrupt = msg.payload.value;
    interruptId = interrupt.interruptId;
    assert.equal(msg.category, "task");
    assert.equal(InterruptKind[interrupt.kind], spec.interrupt.kind);
    assert.ok(interruptId && !interrupt.resolved);
    assert.deepEqual(
      interrupt.toolCalls.map((a) => ({ tool_name: a.toolName, params: a.params })),
      spec.interrupt.tool_calls,
    );
    const run = await deciding.getRun(msg.runId);
    assert.equal(TaskStatus[run.status], spec.waiting_status);
    assert.deepEqual(
      run.pendingInterrupts.map((p) => p.interruptId),
      [interruptId],
    );
    const status = await deciding.resolveInterrupt({
      runId: msg.runId,
      interruptId,
      approve: variant.approve,
      message: variant.message,
    });
    assert.equal(TaskStatus[status], spec.resolved_status);
    const twice = await rejection(deciding.resolveInterrupt({ runId: msg.runId, interruptId, approve: true }));
    assert.ok(checkError(twice, spec.twice) instanceof InterruptAlreadyResolvedError);
    const unknown = deciding.resolveInterrupt({ runId: msg.runId, interruptId: `${interruptId}-nope`, approve: true });
    checkError(await rejection(unknown), spec.unknown);
  }
  assert.deepEqual(
    messages.filter((m) => m.topic !== "chunk").map((m) => m.topic),
    want.topics,
  );
  const resolved = messages.find((m) => m.topic === "interrupt_resolved");
  assert.ok(resolved?.payload.case === "interrupt");
  const decision = resolved.payload.value;
  assert.equal(decision.interruptId, interruptId);
  assert.ok(decision.resolved);
  assert.deepEqual({ approved: decision.approved, message: decision.message }, want.resolved);
  const results = messages.flatMap((m) =>
    m.payload.case === "toolResult"
      ? [{ tool_name: m.payload.value.toolName, content: m.payload.value.content, is_error: m.payload.value.isError }]
      : [],
  );
  assert.deepEqual(results, want.tool_results);
  const last = messages.at(-1)!;
  assert.ok(last.payload.case === "task");
  assert.equal(TaskStatus[last.payload.value.status], want.terminal.status);
  assert.equal(last.payload.value.success, want.terminal.success);
  assert.equal(last.payload.value.answer, want.terminal.answer);
  for (let i = 1; i < messages.length; i++) assert.ok(messages[i].seq > messages[i - 1].seq, "seq must increase");
}
