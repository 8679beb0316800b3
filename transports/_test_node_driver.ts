// Private: a driver bundled for Node (`bun build --target=node`) and run on the Node on the PATH by
// websocket_node_test.ts. argv[2] is a node's port, argv[3] its token. Prints one JSON line: whether
// Node has a global WebSocket, a call over http:// without one, what `new Mesh` with a ws:// node
// says without one, then calls over ws:// with the `ws` package's WebSocket assigned to globalThis
// (README, "Deno, Bun and Node"), with the token and with a wrong one.
import process from "node:process";
import * as ta from "../mod.ts";
import { Solo } from "../examples/distributed_app.ts";

const [port, token] = process.argv.slice(2);
const seen: Record<string, unknown> = { global: typeof globalThis.WebSocket === "function" };
const said = (e: unknown) => `${(e as Error).name}: ${(e as Error).message}`;

async function call(scheme: "http" | "ws", token: string): Promise<unknown> {
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: `${scheme}://127.0.0.1:${port}` })], { token });
  try {
    return await mesh.run(() => Solo.init().echo.go(`over ${scheme}`));
  } catch (e) {
    return said(e);
  } finally {
    await mesh.close();
  }
}

seen.http = await call("http", token);
try {
  await new ta.Mesh([new ta.MeshNode("n1", { endpoint: `ws://127.0.0.1:${port}` })]).close();
  seen.without = "built";
} catch (e) {
  seen.without = said(e);
}
globalThis.WebSocket = (await import("ws")).WebSocket as unknown as typeof WebSocket;
seen.ws = await call("ws", token);
seen.wrong = await call("ws", "wrong-token");
console.log(JSON.stringify(seen));
