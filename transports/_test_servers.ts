// Private test helpers: real servers on this runtime's adapter.
import { serveFrames } from "../adapters/serve.ts";
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
  const port = options.at ? Number(new URL(options.at).port) : 0;
  const served = await serveFrames(handler, { ...options, hostname: "127.0.0.1", port });
  return { endpoint: `${scheme}://127.0.0.1:${served.port}`, close: () => served.close() };
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
