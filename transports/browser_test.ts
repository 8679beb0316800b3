// A page in a real browser (Debian's chromium driven by playwright-core) on an origin a node lets in
// (`thinkagain serve --allow-origin`) calls it over ws:// and http:// with the token, and a wrong
// token is an AuthError on both: the node answers the page's CORS preflight for every header the
// HTTP transport sends, and lets the page read why its WebSocket upgrade was refused.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { runtimeBinary, startNodeProcess, thisRuntime } from "../adapters/_test_nodes.ts";
import { chromiumOrReason } from "../adapters/dashboard/_test_chromium.ts";

const found = await chromiumOrReason();
const skip = "reason" in found ? `browser test skipped: ${found.reason}` : false;
if (skip) console.log(skip);

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const TOKEN = "page-token";

/** Serves the page (its HTML and its bundle) on 127.0.0.1, a free port. */
async function servePage(bundle: string): Promise<{ server: Server; origin: string }> {
  const js = readFileSync(bundle);
  const server = createServer((req, res) => {
    if (req.url === "/page.js") res.writeHead(200, { "content-type": "text/javascript" }).end(js);
    else res.writeHead(200, { "content-type": "text/html" }).end('<script type="module" src="/page.js"></script>');
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

test(
  `a page on an allowed origin calls a node on ${thisRuntime()} over ws:// and http://, and gets AuthError for a wrong token on both`,
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "thinkagain-page-"));
    execFileSync(runtimeBinary("bun"), [fileURLToPath(new URL("./_test_page_build.ts", import.meta.url)), dir], {
      stdio: "pipe",
    });
    const page = await servePage(join(dir, "page.js"));
    const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1", "--allow-origin", page.origin], {
      env: { THINKAGAIN_TOKEN: TOKEN },
    });
    const browser = await chromium.launch({ executablePath: (found as { path: string }).path });
    try {
      const tab = await browser.newPage();
      const errors: string[] = [];
      tab.on("pageerror", (e) => errors.push(String(e)));
      await tab.goto(page.origin);
      await tab.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true, null, { timeout: 30_000 });
      const call = (scheme: string, token: string) =>
        tab.evaluate(
          ([endpoint, token]) =>
            (globalThis as unknown as { call(e: string, t: string): Promise<string> }).call(endpoint, token),
          [`${scheme}://127.0.0.1:${node.port}`, token],
        );
      assert.equal(await call("ws", TOKEN), "a page over ws:");
      assert.equal(await call("http", TOKEN), "a page over http:");
      assert.match(
        await call("ws", "wrong"),
        /^AuthError: Connection to ws:\/\/127\.0\.0\.1:\d+ refused: wrong token$/,
      );
      assert.match(
        await call("http", "wrong"),
        /^AuthError: Connection to http:\/\/127\.0\.0\.1:\d+\/rpc refused: wrong token$/,
      );
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      node.kill();
      await node.exited;
      await new Promise((resolve) => page.server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
