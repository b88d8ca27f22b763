/**
 * The shared `approval` scenario through the TypeScript SDK: stream a run whose tool call waits for a person,
 * resolve it from a second client (its own connection), check the resolution, the tool result and the
 * terminal; resolving twice, or an unknown interrupt, is a typed error.
 */
import assert from "node:assert/strict";

import {
  createClient,
  InterruptAlreadyResolvedError,
  InterruptKind,
  StreamingMode,
  TaskStatus,
  type AgentStreamClient,
  type ClientOptions,
  type Message,
} from "../src/index.js";
import { checkError, checkTerminal, rejection, toolResults, type Scenario } from "./checks.js";

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
  assert.deepEqual(toolResults(messages), want.tool_results);
  checkTerminal(messages, want);
}
