// The dashboard page in a real browser (Debian's chromium driven by playwright-core): what it shows
// matches mesh.stats(), new calls appear without a reload, a token-protected mesh asks for the
// token. Screenshots go to .test-artifacts/ (not committed).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import * as ta from "../../mod.ts";
import { eventually } from "../../core/_test_utils.ts";
import { serveDashboard } from "./mod.ts";
import { ask, deploy, twoNodeMesh } from "./_test_mesh.ts";
import { chromiumOrReason } from "./_test_chromium.ts";
import { NodeServer } from "../../server.ts";
import { serveInMemory } from "../../testing.ts";

const found = await chromiumOrReason();
const skip = "reason" in found ? `browser test skipped: ${found.reason}` : false;
if (skip) console.log(skip);

const ARTIFACTS = new URL("../../.test-artifacts/", import.meta.url);
/** Generous bound on a wait for the page (a busy machine), never a timing claim. */
const WAIT_MS = 30_000;

async function withBrowser(fn: (browser: Browser) => Promise<void>): Promise<void> {
  const browser = await chromium.launch({ executablePath: (found as { path: string }).path });
  try {
    await fn(browser);
  } finally {
    await browser.close();
  }
}

/** The text of every cell of the rows of a table, by row key then field. */
function tableOf(page: Page, id: string): Promise<Record<string, Record<string, string>>> {
  return page.$$eval(`#${id} tbody tr[data-key]`, (rows) => {
    const out: Record<string, Record<string, string>> = {};
    for (const tr of rows as HTMLElement[]) {
      const cells: Record<string, string> = {};
      for (const td of tr.querySelectorAll<HTMLElement>("td[data-field]")) {
        cells[td.dataset.field!] = td.textContent ?? "";
      }
      out[tr.dataset.key!] = cells;
    }
    return out;
  });
}

test("the dashboard page shows the nodes, instances and counts of mesh.stats(), and new calls without a reload", {
  skip,
  timeout: 120_000,
}, async () => {
  const { mesh, close } = twoNodeMesh();
  const dashboard = await serveDashboard(mesh, { intervalMs: 100 });
  try {
    const p = await deploy(mesh);
    {
      using _profile = ta.profile();
      await ask(mesh, p, "What is ML?");
    }
    await ask(mesh, p, "What is a mesh?");
    await withBrowser(async (browser) => {
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(dashboard.url);
      await page.waitForFunction(() => document.querySelector("#status")?.textContent === "live", null, {
        timeout: WAIT_MS,
      });

      const stats = mesh.stats();
      const nodes = await tableOf(page, "nodes");
      assert.deepEqual(Object.keys(nodes), stats.nodes.map((n) => n.name));
      for (const n of stats.nodes) {
        assert.equal(
          nodes[n.name].gpus,
          `${n.gpus.free.toLocaleString("en-US")} / ${n.gpus.total.toLocaleString("en-US")}`,
          `${n.name} GPUs`,
        );
        assert.equal(
          nodes[n.name].cpus,
          `${n.cpus.free.toLocaleString("en-US")} / ${n.cpus.total.toLocaleString("en-US")}`,
          `${n.name} CPUs`,
        );
        assert.equal(nodes[n.name].endpoint, n.endpoint);
        assert.equal(nodes[n.name].instances, String(stats.instances.filter((i) => i.node === n.name).length));
      }
      const instances = await tableOf(page, "instances");
      assert.equal(Object.keys(instances).length, stats.instances.length);
      for (const i of stats.instances) {
        // (one instance of each service here: its id is service/replica@node)
        const row = instances[`${i.service}/${i.replica}@${i.node}`];
        assert.ok(row, `a row for ${i.service}/${i.replica}@${i.node}`);
        assert.deepEqual([row.node, row.calls, row.outstanding], [
          i.node,
          i.calls.toLocaleString("en-US"),
          i.outstanding.toLocaleString("en-US"),
        ]);
      }
      assert.deepEqual(Object.keys(await tableOf(page, "ops")), [], "no calls since the page opened yet");
      // the last profile's DAG: a box per task, the critical path marked
      await page.waitForSelector("#dag g.task", { timeout: WAIT_MS });
      assert.ok((await page.$$("#dag g.task.critical")).length >= 2, "the critical path is highlighted");
      assert.ok((await page.$$("#dag path.dep")).length >= 2, "inputs are arrows");

      // new calls, no reload: the same document shows them
      await page.evaluate(() => ((globalThis as Record<string, unknown>).sameDocument = true));
      await ask(mesh, p, "And now?");
      await ask(mesh, p, "And then?");
      const after = mesh.stats();
      const gen = after.instances.find((i) => i.service === "DashGenerator")!;
      await page.waitForFunction(
        ([key, calls]) =>
          document.querySelector(`#instances tr[data-key="${key}"] td[data-field=calls]`)?.textContent === calls &&
          document.querySelector(`#ops tr[data-key="DashGenerator.generate"] td[data-field=completed]`)
              ?.textContent === "2",
        [`DashGenerator/${gen.replica}@${gen.node}`, gen.calls.toLocaleString("en-US")],
        { timeout: WAIT_MS },
      );
      assert.equal(await page.evaluate(() => (globalThis as Record<string, unknown>).sameDocument), true);
      const ops = await tableOf(page, "ops");
      assert.deepEqual(Object.keys(ops), ["DashGenerator.generate", "DashRetriever.retrieve", "dashEmbed"]);
      for (const name of Object.keys(ops)) {
        assert.deepEqual([ops[name].calls, ops[name].completed, ops[name].failed], ["2", "2", "0"], name);
      }
      assert.equal(gen.calls, 4);
      for (const i of after.instances) {
        assert.equal(
          (await tableOf(page, "instances"))[`${i.service}/${i.replica}@${i.node}`].calls,
          i.calls.toLocaleString("en-US"),
        );
      }

      // a task's details on click, then the picture a person looks at
      await page.click("#dag g.task.critical");
      assert.match(await page.textContent("#details") ?? "", /critical path\s*yes/);
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: new URL("dashboard.png", ARTIFACTS).pathname, fullPage: true });
      assert.deepEqual(errors, [], "no script errors on the page");
    });
  } finally {
    await dashboard.close();
    await close();
  }
});

test("a token-protected mesh's dashboard page asks for the token, refuses a wrong one, then shows the mesh", {
  skip,
  timeout: 120_000,
}, async () => {
  const { mesh, close } = twoNodeMesh({ token: "s3cret" });
  const dashboard = await serveDashboard(mesh, { intervalMs: 100 });
  try {
    await withBrowser(async (browser) => {
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      await page.goto(dashboard.url);
      await page.waitForSelector("#token-form:not(.hidden)", { timeout: WAIT_MS });
      assert.equal(await page.isHidden("#nodes-panel"), true, "no data panels before the token");
      assert.equal(await page.textContent("#mesh-name"), "\u2026", "an ellipsis until the mesh's name is known");
      await page.fill("#token-input", "wrong");
      await page.click("#token-form button");
      await page.waitForFunction(() => document.querySelector("#token-error")?.textContent !== "", null, {
        timeout: WAIT_MS,
      });
      assert.match(await page.textContent("#token-error") ?? "", /refused/);
      await page.fill("#token-input", "s3cret");
      await page.click("#token-form button");
      await page.waitForFunction(() => document.querySelector("#status")?.textContent === "live", null, {
        timeout: WAIT_MS,
      });
      assert.deepEqual(Object.keys(await tableOf(page, "nodes")), ["n1", "n2"]);
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: new URL("dashboard-token.png", ARTIFACTS).pathname });
    });
  } finally {
    await dashboard.close();
    await close();
  }
});

test("the dashboard page lists a task the mesh's watchdog reported stuck, with its explanation", {
  skip,
  timeout: 120_000,
}, async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const hang = ta.op(async function browserStuckOp() {
    await held;
    return 1;
  });
  await using mesh = new ta.Mesh([new ta.MeshNode("solo")], { stuckAfterMs: 20, onStuck: () => {} });
  await using dashboard = await serveDashboard(mesh, { intervalMs: 100 });
  try {
    await withBrowser(async (browser) => {
      const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.goto(dashboard.url);
      await page.waitForFunction(() => document.querySelector("#status")?.textContent === "live", null, {
        timeout: WAIT_MS,
      });
      assert.equal(await page.isVisible("#stuck-panel"), false, "no panel while nothing was reported");
      const { ref } = await mesh.run(() => ({ ref: hang.go() }));
      await page.waitForSelector(`#stuck tr[data-key="${ref.id}"]`, { timeout: WAIT_MS });
      assert.equal(await page.isVisible("#stuck-panel"), true);
      const row = (await tableOf(page, "stuck"))[ref.id];
      assert.equal(row.waiting, "running");
      assert.match(row.why, new RegExp(`^${ref.id}: running `));
      release();
      await ref;
      await page.waitForSelector("#stuck tr.empty", { timeout: WAIT_MS });
      assert.deepEqual(errors, [], "no script errors on the page");
    });
  } finally {
    release();
  }
});

test(
  "the page's Instances table has one row per instance, also for two init()s of one service, and a lost node's alone say lost",
  {
    skip,
    timeout: 120_000,
  },
  async () => {
    const Sess = ta.service(
      { name: "BrowserRowsSess" },
      class BrowserRowsSess {
        n = 0;
        add(): number {
          return ++this.n;
        }
      },
    );
    const up = new NodeServer({ name: "left" }), gone = new NodeServer({ name: "right" });
    const upServer = serveInMemory("browser-rows-left", up.handler),
      goneServer = serveInMemory("browser-rows-right", gone.handler);
    const mesh = new ta.Mesh([
      new ta.MeshNode("left", { endpoint: upServer.endpoint }),
      new ta.MeshNode("right", { endpoint: goneServer.endpoint }),
    ]);
    const dashboard = await serveDashboard(mesh, { intervalMs: 100 });
    try {
      await withBrowser(async (browser) => {
        const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
        const errors: string[] = [];
        page.on("pageerror", (e) => errors.push(String(e)));
        await page.goto(dashboard.url);
        await page.waitForFunction(() => document.querySelector("#status")?.textContent === "live", null, {
          timeout: WAIT_MS,
        });
        // four init()s, replica 0 each: two on each node; one of them called 6 times, the others once
        const hs = await mesh.run(async () => {
          const hs = [Sess.init(), Sess.init(), Sess.init(), Sess.init()];
          await Promise.all(hs.map((h) => h.add.go()));
          for (let i = 0; i < 5; i++) await hs[0].add.go();
          return hs;
        });
        /** Until the Instances table reads `want` ("node calls state" per row, sorted), or says how it differs. */
        const untilRows = async (want: string[]) => {
          const rows = () =>
            page.$$eval(
              "#instances tbody tr",
              (trs) =>
                (trs as HTMLElement[]).map((tr) =>
                  ["node", "calls", "state"].map((f) => tr.querySelector(`td[data-field=${f}]`)?.textContent).join(" ")
                ).sort(),
            );
          await eventually(async () => JSON.stringify(await rows()) === JSON.stringify(want), WAIT_MS);
          assert.deepEqual(await rows(), want);
        };
        const expected = (states: Record<string, string>) =>
          mesh.stats().instances.map((i) => `${i.node} ${i.calls} ${states[i.node]}`).sort();
        const ready = expected({ left: "ready", right: "ready" });
        assert.equal(ready.filter((r) => r.endsWith(" 6 ready")).length, 1, `one instance with 6 calls: ${ready}`);
        await untilRows(ready);

        // right's connection drops: its two rows say lost, left's two stay ready
        await goneServer.close();
        await mesh.run(() => Promise.all(hs.map((h) => h.add.go().catch(() => undefined))));
        const lost = expected({ left: "ready", right: "lost" });
        assert.deepEqual(lost.map((r) => r.split(" ")[2]).sort(), ["lost", "lost", "ready", "ready"]);
        await untilRows(lost);
        assert.deepEqual(errors, [], "no script errors on the page");
      });
    } finally {
      await dashboard.close();
      await mesh.close();
      await upServer.close();
      await up.drain({ graceMs: 0 });
      await gone.drain({ graceMs: 0 });
    }
  },
);
