/** Streams 20,000 tokens (one event each) and reports this SDK's events/s; `make interop` prints it. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient, StreamingMode } from "../src/index.js";

test("throughput", async () => {
  const client = createClient({ baseUrl: `http://${process.env.AGENTSTREAM_TARGET}` });
  const start = performance.now();
  let events = 0;
  for await (const _ of client.streamingRun({ input: "bench: tokens=20000", streamingMode: StreamingMode.CHUNK })) {
    events++;
  }
  assert.equal(events, 20001);
  console.log(`typescript sdk: ${Math.round(events / ((performance.now() - start) / 1000))} events/s`);
});
