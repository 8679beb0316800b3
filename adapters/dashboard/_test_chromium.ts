// Test helper (private): where Debian's chromium is, installing it with apt when it is missing and
// this process may (root, apt-get present), so the browser test skips only where it truly cannot run.
import { execFile } from "node:child_process";
import { access } from "node:fs/promises";
import process from "node:process";

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[]): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 600_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ ok: error === null, output: `${stdout}${stderr}`.slice(-2000) });
    });
  });
}

async function found(): Promise<string | undefined> {
  const env = process.env.CHROMIUM_PATH;
  if (env) return (await exists(env)) ? env : undefined;
  for (const c of CANDIDATES) if (await exists(c)) return c;
  return undefined;
}

/** The chromium executable, or why there is none (then the browser test skips with that reason). */
export async function chromiumOrReason(): Promise<{ path: string } | { reason: string }> {
  const path = await found();
  if (path !== undefined) return { path };
  if (process.env.CHROMIUM_PATH) return { reason: `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} does not exist` };
  if (process.platform !== "linux") return { reason: `no chromium found (${CANDIDATES.join(", ")})` };
  if (typeof process.getuid !== "function" || process.getuid() !== 0) {
    return { reason: "no chromium found and not root to install it: run `apt-get install -y chromium` (see .ci/run)" };
  }
  if (!(await exists("/usr/bin/apt-get"))) return { reason: "no chromium found and no apt-get to install it" };
  let install = await run("apt-get", ["install", "-y", "-q", "chromium"]);
  if (!install.ok) {
    await run("apt-get", ["update", "-q"]);
    install = await run("apt-get", ["install", "-y", "-q", "chromium"]);
  }
  const after = await found();
  if (after !== undefined) return { path: after };
  return { reason: `chromium could not be installed with apt-get: ${install.output.trim().split("\n").at(-1)}` };
}
