// Private: bundles _test_page_main.ts for a browser into the directory argv[2] (page.js), with
// _test_page_als.ts for `node:async_hooks`. Run by browser_test.ts with Bun, whichever runtime
// runs the test (Bun.build takes the plugin that swaps the module).
import process from "node:process";
import { fileURLToPath } from "node:url";

/** What this script uses of Bun (run with Bun; the project's types are not Bun's). */
interface BunBuild {
  build(options: Record<string, unknown>): Promise<{ success: boolean; logs: unknown[] }>;
}
interface PluginBuild {
  onResolve(options: { filter: RegExp }, resolve: () => { path: string }): void;
}

const bun = (globalThis as unknown as { Bun: BunBuild }).Bun;
const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const built = await bun.build({
  entrypoints: [here("./_test_page_main.ts")],
  target: "browser",
  outdir: process.argv[2],
  naming: "page.js",
  plugins: [{
    name: "async-hooks-for-a-page",
    setup(build: PluginBuild) {
      build.onResolve({ filter: /^node:async_hooks$/ }, () => ({ path: here("./_test_page_als.ts") }));
    },
  }],
});
if (!built.success) {
  console.error(built.logs.map(String).join("\n"));
  process.exit(1);
}
