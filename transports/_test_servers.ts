// Private test helpers: real servers on this runtime's adapter.
import assert from "node:assert/strict";
import type net from "node:net";
import { serveFrames } from "../adapters/serve.ts";
import { WS_PROTOCOL } from "./_common.ts";
import type { TestServer } from "./_conformance.ts";
import type { FrameHandler, ServeFramesOptions } from "./transport.ts";
import { FRAME_HEADER_BYTES, KIND_REQUEST, writeHeader } from "./ws_framing.ts";
import { decodeReply, encodeMessage, type PongMessage } from "./protocol.ts";

/** Starts a real node on 127.0.0.1 (a free port, or the port of `at`). */
export async function startRealServer(
  handler: FrameHandler,
  options: ServeFramesOptions & { at?: string } = {},
  scheme: "http" | "ws" = "http",
): Promise<TestServer> {
  const { at, ...serveOptions } = options;
  const port = at ? Number(new URL(at).port) : 0;
  const served = await serveFrames(handler, { ...serveOptions, hostname: "127.0.0.1", port });
  return { endpoint: `${scheme}://127.0.0.1:${served.port}`, close: () => served.close() };
}

/** The head of a WebSocket upgrade request for `path` on 127.0.0.1:`port`, with our subprotocol (a fixed key). */
export function wsUpgradeHead(port: number, path = "/ws"): string {
  return `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${WS_PROTOCOL}\r\n\r\n`;
}

/**
 * Waits for `raw` to connect to the node on `port`, upgrades it to a WebSocket on `path`
 * ({@linkcode wsUpgradeHead}) and reads the answer's head, which must be a 101. Returns the bytes
 * that came after the head in the same reads (the node's first frames, if any).
 */
export async function upgradeRaw(raw: net.Socket, port: number, path = "/ws"): Promise<Uint8Array> {
  await new Promise<void>((resolve, reject) => raw.once("connect", resolve).once("error", reject));
  let got = new Uint8Array(0);
  let end = -1;
  const upgraded = new Promise<void>((resolve) => {
    raw.on("data", function onHead(d: Uint8Array) {
      const all = new Uint8Array(got.byteLength + d.byteLength);
      all.set(got);
      all.set(d, got.byteLength);
      got = all;
      end = new TextDecoder("latin1").decode(got).indexOf("\r\n\r\n");
      if (end >= 0) {
        raw.off("data", onHead);
        resolve();
      }
    });
  });
  raw.write(wsUpgradeHead(port, path));
  await upgraded;
  assert.match(new TextDecoder("latin1").decode(got.subarray(0, end)), /^HTTP\/1\.1 101/);
  return got.slice(end + 4);
}

/** One masked client WebSocket message (a zero mask) carrying a request frame with `body` (under 126 bytes). */
export function wsRequest(id: number, body: Uint8Array): Uint8Array {
  const n = FRAME_HEADER_BYTES + body.byteLength;
  const out = new Uint8Array(2 + 4 + n);
  out[0] = 0x82;
  out[1] = 0x80 | n; // n < 126
  writeHeader(out.subarray(6), KIND_REQUEST, id);
  out.set(body, 6 + FRAME_HEADER_BYTES);
  return out;
}

/** How many objects node `port`'s store holds (its `pong` says), asked over HTTP directly. */
export async function storedObjects(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/rpc`, {
    method: "POST",
    body: encodeMessage({ t: "ping" }) as Uint8Array<ArrayBuffer>,
    headers: { "content-type": "application/cbor" },
  });
  return decodeReply<PongMessage>(new Uint8Array(await res.arrayBuffer()), "pong").objects ?? 0;
}
