// Private test helpers: real servers on this runtime's adapter.
import { serveFrames } from "../adapters/serve.ts";
import type { TestServer } from "./_conformance.ts";
import type { FrameHandler, ServeFramesOptions } from "./transport.ts";

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
