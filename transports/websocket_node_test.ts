// A driver on Node itself (bundled by `bun build`, as Node 20 cannot load the .ts sources) against
// a `thinkagain serve` node: Node 20 has no global WebSocket, so `http://` endpoints work as they
// are, a `ws://` one is a TypeError that says what to do when the mesh is built, and the `ws`
// package's WebSocket assigned to globalThis serves `ws://` (README, "Deno, Bun and Node").
// Skipped, saying so, where no `node` is on the PATH.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startNodeProcess } from "../adapters/_test_nodes.ts";

function nodeVersion(): string | undefined {
  try {
    return execFileSync("node", ["--version"], { encoding: "utf8" }).trim();
  } catch {
    return undefined;
  }
}
const NODE_VERSION = nodeVersion();
const skip = NODE_VERSION === undefined ? "Node driver test skipped: no node on the PATH" : false;
if (skip) console.log(skip);

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const TOKEN = "node-driver-token";

test(
  "a driver on Node reaches a node over http:// as it is, and over ws:// with ws's WebSocket on globalThis; without a WebSocket a ws:// mesh says so",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "thinkagain-node-driver-"));
    const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { env: { THINKAGAIN_TOKEN: TOKEN } });
    try {
      const out = join(dir, "driver.mjs");
      const bun = fileURLToPath(new URL("../node_modules/.bin/bun", import.meta.url));
      const entry = fileURLToPath(new URL("./_test_node_driver.ts", import.meta.url));
      execFileSync(bun, ["build", entry, "--target=node", "--outfile", out], { stdio: "pipe" });
      const printed = execFileSync("node", [out, String(node.port), TOKEN], { encoding: "utf8", timeout: 60_000 });
      const seen = JSON.parse(printed.trim().split("\n").at(-1)!);
      assert.equal(seen.http, "over http");
      if (seen.global === false) {
        // Node before 22: said when the mesh is built, naming the runtime and the ways out
        assert.match(seen.without, /^TypeError: .*this runtime \(Node [\d.]+\) has no global WebSocket/);
        assert.match(seen.without, /globalThis\.WebSocket = \(await import\("ws"\)\)\.WebSocket/);
        assert.match(seen.without, /reach the node over HTTP \(an http:\/\/ endpoint/);
      } else {
        console.log(`${NODE_VERSION} has a global WebSocket: the ws:// mesh without one is not tried`);
        assert.equal(seen.without, "built");
      }
      assert.equal(seen.ws, "over ws");
      assert.match(seen.wrong, /^AuthError: Connection to ws:\/\/127\.0\.0\.1:\d+ refused: wrong token$/);
    } finally {
      node.kill();
      await node.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
