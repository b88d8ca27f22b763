/** The shared scenarios (tests/scenarios) through the TypeScript SDK against a live server (`make interop`). */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { fromJson, type JsonValue } from "@bufbuild/protobuf";

import {
  AgentStreamError,
  AgentNotFoundError,
  createClient,
  ERRORS_BY_REASON,
  errorForTask,
  MessageSchema,
  StreamingMode,
  TASK_RESPONSE_TOPIC,
  TaskStatus,
  TransportError,
  type AgentStreamClient,
  type ClientOptions,
  type Message,
} from "../src/index.js";
import { runApprovalScenario } from "./approval.js";
import { checkError, checkTerminal, rejection, toolResults, type Scenario } from "./checks.js";
import { startProxy } from "./cutting-proxy.js";

const target = process.env.AGENTSTREAM_TARGET;
if (!target) throw new Error("AGENTSTREAM_TARGET is not set: run these tests with `make interop`");
const client = createClient({ baseUrl: `http://${target}` });
const dir = join(import.meta.dirname, "..", "..", "..", "..", "tests", "scenarios");
const scenarios = readdirSync(dir)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));

function modeOf(mode: string | number): StreamingMode {
  return typeof mode === "number" ? (mode as StreamingMode) : StreamingMode[mode as keyof typeof StreamingMode];
}

const statusName = (s: TaskStatus) => TaskStatus[s];

for (const s of scenarios) {
  test(`scenario ${s.name}`, async () => {
    if (s.resume) return runResumeScenario(client, s, target!, (address) => ({ baseUrl: `http://${address}` }));
    if (s.terminals) return checkTerminalMapping(s);
    if (s.session) return runSessionScenario(client, s);
    if (s.approval) return runApprovalScenario(s, { baseUrl: `http://${target}` });
    return runScenario(client, s);
  });
}

/** Run one scenario's call and check what it streams (or the error it fails with). */
async function runScenario(client: AgentStreamClient, s: Scenario) {
  const expect = s.expect;
  const controller = new AbortController();
  const stream = client.streamingRun({
    input: s.input,
    agent: s.agent,
    streamingMode: modeOf(s.mode ?? "CORE"),
    signal: controller.signal,
  });
  const messages: Message[] = [];
  let chunks = 0;
  try {
    for await (const msg of stream) {
      messages.push(msg);
      if (msg.payload.case === "chunk") chunks++;
      if (s.cancel_after_chunks && chunks === s.cancel_after_chunks) {
        controller.abort();
        break;
      }
    }
  } catch (error) {
    assert.ok(expect.error, `unexpected error ${error}`);
    assert.ok(error instanceof AgentStreamError);
    assert.equal(error.codeName, expect.error.code);
    assert.equal(error.reason, expect.error.reason);
    if (expect.error.field) assert.ok(error.fieldViolations.some((v) => v.field === expect.error.field));
    return;
  }
  assert.ok(!expect.error, `expected ${expect.error?.reason}, got a stream`);
  if (s.cancel_after_chunks) {
    const runId = messages[0].runId;
    const deadline = Date.now() + 5000;
    let run = await client.getRun(runId);
    while (run.status === TaskStatus.RUNNING && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      run = await client.getRun(runId);
    }
    assert.equal(statusName(run.status), expect.terminal.status);
    return;
  }
  if (expect.categories) assert.deepEqual(messages.map((m) => m.category), expect.categories);
  const text = messages.map((m) => (m.payload.case === "chunk" ? m.payload.value.content : "")).join("");
  if (expect.chunk_text !== undefined) assert.equal(text, expect.chunk_text);
  if (expect.tool_calls) {
    const calls = messages.flatMap((m) =>
      m.payload.case === "tool" ? m.payload.value.actions.map((a) => ({ tool_name: a.toolName, params: a.params })) : [],
    );
    assert.deepEqual(calls, expect.tool_calls);
  }
  if (expect.tool_results) assert.deepEqual(toolResults(messages), expect.tool_results);
  if (expect.nesting) checkNesting(messages, expect.nesting);
  checkTerminal(messages, expect);
}

/** The depth of every message; nested ones name their caller, sender and the tool call that started them. */
function checkNesting(messages: Message[], nesting: Scenario) {
  assert.deepEqual(
    messages.map((m) => m.depth),
    nesting.depths,
  );
  const call = messages.find((m) => m.payload.case === "tool");
  const callId = call?.payload.case === "tool" ? call.payload.value.actions[0].toolCallId : "";
  const nested = messages.filter((m) => m.depth > 0);
  assert.ok(nested.length > 0);
  for (const m of nested) {
    assert.equal(m.caller, nesting.caller);
    assert.equal(m.parentToolCallId, callId);
    if (m.category === "chunk" || m.category === "agent") assert.equal(m.sender, nesting.sender);
  }
  const groups = messages.filter((m) => m.payload.case === "group");
  assert.deepEqual(
    groups.map((m) => m.topic),
    nesting.groups,
  );
  for (const m of groups) if (m.payload.case === "group") assert.equal(m.payload.value.toolCallId, callId);
}


/**
 * Subscribe with resume through a proxy to upstream and cut it mid-run: every event exactly once.
 * `options` are the proxied client's options for the proxy's address.
 */
async function runResumeScenario(
  client: AgentStreamClient,
  s: Scenario,
  upstream: string,
  options: (address: string) => ClientOptions,
) {
  const proxy = await startProxy(upstream);
  try {
    const proxied = createClient(options(proxy.address));
    const runId = await client.startRun({ input: s.input, agent: s.agent });
    const messages: Message[] = [];
    for await (const msg of proxied.subscribeRun({ runId, streamingMode: modeOf(s.mode), resume: true })) {
      messages.push(msg);
      if (messages.length === s.resume.cut_after_events) {
        proxy.cut();
        assert.equal((await client.getRun(runId)).status, TaskStatus.RUNNING, "the run ended before the cut");
      }
    }
    assert.ok(proxy.connections() >= 2, "the SDK did not re-subscribe");
    assert.deepEqual(
      messages.map((m) => Number(m.seq)),
      messages.map((_, i) => i + 1),
      "duplicate or gap",
    );
    assert.equal(messages.filter((m) => m.payload.case === "chunk").length, s.expect.chunks);
    assert.equal((await client.getRun(runId)).lastSeq, messages.at(-1)!.seq);
    checkTerminal(messages, s.expect);
  } finally {
    await proxy.close();
  }
}

/** Each terminal message of the scenario decodes and maps (errorForTask) to the typed error of its reason. */
function checkTerminalMapping(s: Scenario) {
  for (const raw of s.terminals as JsonValue[]) {
    const msg = fromJson(MessageSchema, raw);
    assert.equal(msg.topic, TASK_RESPONSE_TOPIC);
    assert.equal(msg.payload.case, "task");
    if (msg.payload.case !== "task") return;
    assert.equal(statusName(msg.payload.value.status), s.expect.terminal.status);
    assert.equal(msg.payload.value.success, s.expect.terminal.success);
    const error = errorForTask(msg.payload.value);
    assert.equal(error.constructor, ERRORS_BY_REASON[s.expect.error.reason]);
    assert.equal(error.codeName, s.expect.error.code);
    assert.equal(error.reason, s.expect.error.reason);
  }
}

test("unknown agent lists the known ones", async () => {
  await assert.rejects(
    async () => {
      for await (const _ of client.streamingRun({ input: "hi", agent: "ghost" })) void _;
    },
    (error: unknown) => error instanceof AgentNotFoundError && error.knownAgents.includes("assistant"),
  );
});

// Over TLS and mTLS (`make interop` starts those servers too): streaming with a tool call, an error status,
// a resumed subscription through a proxy (a second TLS handshake) and an approval from a second connection;
// and mTLS refuses a client without a certificate.
const TLS_SCENARIOS = ["calculator_core", "unknown_agent", "resume", "approval"];
const ca = process.env.AGENTSTREAM_INTEROP_CA;
const tlsServers = [
  { name: "TLS", address: process.env.AGENTSTREAM_INTEROP_TLS_TARGET, mtls: false },
  { name: "mTLS", address: process.env.AGENTSTREAM_INTEROP_MTLS_TARGET, mtls: true },
];
const needsTls = ca ? {} : { skip: "needs make interop's TLS and mTLS servers" };

function tlsOptions(address: string, mtls: boolean): ClientOptions {
  const cert = mtls
    ? { cert: readFileSync(process.env.AGENTSTREAM_INTEROP_CERT!), key: readFileSync(process.env.AGENTSTREAM_INTEROP_KEY!) }
    : {};
  return { baseUrl: `https://${address}`, tls: { ca: readFileSync(ca!), ...cert } };
}

for (const server of tlsServers) {
  for (const name of TLS_SCENARIOS) {
    test(`${server.name} scenario ${name}`, needsTls, async () => {
      const s = scenarios.find((x) => x.name === name);
      assert.ok(s, `no scenario ${name}`);
      const client = createClient(tlsOptions(server.address!, server.mtls));
      if (s.resume) {
        return runResumeScenario(client, s, server.address!, (address) => tlsOptions(address, server.mtls));
      }
      if (s.approval) return runApprovalScenario(s, tlsOptions(server.address!, server.mtls));
      return runScenario(client, s);
    });
  }
}

test("mTLS refuses a client without a certificate", needsTls, async () => {
  const client = createClient({
    baseUrl: `https://${process.env.AGENTSTREAM_INTEROP_MTLS_TARGET}`,
    tls: { ca: readFileSync(ca!) },
  });
  await assert.rejects(
    async () => {
      for await (const _ of client.streamingRun({ input: "hello", streamingMode: StreamingMode.CHUNK })) {
        // a message would mean the server took a client without a certificate
      }
    },
    // connect-node reports the server's TLS alert as the stream being cancelled (CANCELED): Node tears the
    // session's open streams down with RST_STREAM CANCEL (see connectrpc/connect-es#1492).
    (error) => error instanceof TransportError && ["UNAVAILABLE", "CANCELED"].includes(error.codeName),
  );
});

/** A conversation across runs, then GetSession, a busy session, DeleteSession and an unknown session. */
async function runSessionScenario(client: AgentStreamClient, s: Scenario) {
  const want = s.expect.session;
  const sessionId = `scenario-ts-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  for (const [i, input] of s.session.runs.entries()) {
    const messages: Message[] = [];
    for await (const msg of client.streamingRun({ input, sessionId })) messages.push(msg);
    const last = messages.at(-1)!;
    assert.equal(last.payload.case === "task" ? last.payload.value.answer : undefined, want.answers[i]);
  }
  const session = await client.getSession(sessionId);
  assert.deepEqual(
    session.turns.map((t) => [t.role, t.content]),
    want.turns,
  );
  assert.equal(session.runIds.length, s.session.runs.length);
  assert.equal(session.liveRunId, "");
  const live = await client.startRun({ input: s.session.busy_input, sessionId });
  const busyRun = async () => {
    for await (const _ of client.streamingRun({ input: "again", sessionId })) void _;
  };
  for (const call of [busyRun, () => client.deleteSession(sessionId)]) {
    assert.equal(checkError(await rejection(call()), want.busy).metadata.run_id, live);
  }
  await client.cancelRun(live, "scenario");
  assert.equal(await client.deleteSession(sessionId), want.deleted_turns);
  checkError(await rejection(client.getSession(sessionId)), want.unknown);
  checkError(await rejection(client.deleteSession(sessionId)), want.unknown);
}
