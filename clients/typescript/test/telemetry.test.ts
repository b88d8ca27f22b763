/** Every call carries the caller's trace context (W3C traceparent), read from the active OpenTelemetry context. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { context, trace, TraceFlags } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";

import { createClient, MessageSchema, RunnerService, RunSchema, TASK_RESPONSE_TOPIC } from "../src/index.js";

test("unary and streaming calls send the active span's traceparent, and none without one", async () => {
  const seen: (string | null)[] = [];
  const transport = createRouterTransport(({ service }) => {
    service(RunnerService, {
      getRun(request, ctx) {
        seen.push(ctx.requestHeader.get("traceparent"));
        return create(RunSchema, { runId: request.runId });
      },
      async *streamingRun(_request, ctx) {
        seen.push(ctx.requestHeader.get("traceparent"));
        yield create(MessageSchema, { runId: "r1", seq: 1n, topic: TASK_RESPONSE_TOPIC });
      },
    });
  });
  const client = createClient({ transport });
  const manager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
  try {
    const caller = trace.setSpanContext(context.active(), {
      traceId: "0af7651916cd43dd8448eb211c80319c",
      spanId: "b7ad6b7169203331",
      traceFlags: TraceFlags.SAMPLED,
    });
    await context.with(caller, async () => {
      await client.getRun("r1");
      for await (const _ of client.streamingRun({ input: "hi" })) {
        // drain
      }
    });
    await client.getRun("r1");
  } finally {
    context.disable();
  }
  const want = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  assert.deepEqual(seen, [want, want, null]);
});
