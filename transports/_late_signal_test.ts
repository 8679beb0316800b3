import { ok, strictEqual } from "node:assert/strict";
import { test } from "node:test";
import { serveFrames } from "../adapters/serve.ts";
import { eventually } from "../core/_test_utils.ts";
import { encodeMessage } from "./protocol.ts";
import { LateSignals } from "./_late_signal.ts";

test("LateSignals aborts a request's controller when its client leaves after the sweep linked it", async () => {
  const signals = new LateSignals(10);
  const client = new AbortController();
  const controller = signals.open(client);
  await eventually(() => false, 50); // let a sweep or more pass
  strictEqual(controller.signal.aborted, false);
  client.abort(new Error("gone"));
  ok(await eventually(() => controller.signal.aborted), "the client leaving reached the request's signal");
  strictEqual((controller.signal.reason as Error).message, "gone");
});

test("LateSignals: a client that left before the sweep still aborts; an answered request is never aborted", async () => {
  const signals = new LateSignals(10);
  const left = new AbortController();
  left.abort();
  const early = signals.open(left);
  const answeredClient = new AbortController();
  const answered = signals.open(answeredClient);
  ok(await eventually(() => early.signal.aborted), "a client gone before the sweep is seen by it");
  signals.answered(answered);
  answeredClient.abort(); // e.g. Deno aborts a request's signal once its response is sent
  await eventually(() => false, 50);
  strictEqual(answered.signal.aborted, false);
  signals.answered(early);
});

test("a node stops an HTTP call whose client went away, on this runtime's adapter", async () => {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let stopped = false;
  const server = await serveFrames((_frame, peer) =>
    new Promise<Uint8Array>((resolve) => {
      started();
      peer?.signal?.addEventListener("abort", () => {
        stopped = true;
        resolve(encodeMessage({ t: "pong" }));
      });
    }), { port: 0 });
  try {
    const client = new AbortController();
    const reply = fetch(`${server.url}/rpc`, {
      method: "POST",
      headers: { "content-type": "application/cbor" },
      body: encodeMessage({ t: "ping" }) as Uint8Array<ArrayBuffer>,
      signal: client.signal,
    }).catch(() => undefined);
    await running;
    client.abort();
    await reply;
    ok(await eventually(() => stopped, 30_000), "the call saw its client leave");
  } finally {
    await server.close();
  }
});
