import { deepStrictEqual, strictEqual } from "node:assert/strict";
import { execFile } from "node:child_process";
import process from "node:process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const script = fileURLToPath(new URL("./_test_import_pure.ts", import.meta.url));
const isDeno = "Deno" in globalThis;

test("importing the package installs nothing; the first op() arms tracing's provider detection", async () => {
  const args = isDeno ? ["run", "-A", script] : [script];
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(stdout);
    })
  );
  const lines = out.trim().split("\n");
  strictEqual(lines.length, 1, out);
  deepStrictEqual(JSON.parse(lines[0]), { afterImport: true, afterOp: true });
});
