// deno.json's tasks, run by the deno that `npm install` put in node_modules: its task runner takes a
// bare `deno` for node_modules/.bin/deno, a native binary, and would run it as a script.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runtimeBinary } from "./adapters/_test_nodes.ts";

const ROOT = fileURLToPath(new URL(".", import.meta.url));

test("deno task demo runs the demo with the deno installed in node_modules", { timeout: 120_000 }, async () => {
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(runtimeBinary("deno"), ["task", "demo"], { cwd: ROOT, timeout: 110_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : (error as { code?: number }).code ?? null, out: `${stdout}${stderr}` });
    });
  });
  assert.doesNotMatch(out, /SyntaxError/, "the deno binary was not run as a script");
  assert.equal(code, 0, out);
  assert.match(out, /AnswerGenerator\.generate/, "the demo's profile");
});
