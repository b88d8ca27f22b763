/** TLS options of createClient (the TLS and mTLS scenarios are in scenarios.test.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { createClient } from "../src/index.js";

test("tls options need an https:// baseUrl", () => {
  assert.throws(
    () => createClient({ baseUrl: "http://127.0.0.1:1", tls: { ca: "x" } }),
    /tls options need an https:\/\/ baseUrl/,
  );
});
