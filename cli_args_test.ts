import { test } from "node:test";
import assert from "node:assert/strict";
import { parseServeArgs } from "./cli_serve.ts";

test("parseServeArgs refuses a flag whose value is missing, also when the next word is another option", () => {
  const cases: [string[], string][] = [
    [["--port", "0", "--token", "--dashboard"], "--token needs a value, got the option --dashboard"],
    [["--name", "--dashboard"], "--name needs a value, got the option --dashboard"],
    [["--host", "--dashboard"], "--host needs a value, got the option --dashboard"],
    [["--host", "--port", "0"], "--host needs a value, got the option --port"],
    [["--token-file", "--port", "0"], "--token-file needs a value, got the option --port"],
    [["--peer", "--lease-ms", "5"], "--peer needs a value, got the option --lease-ms"],
    [["--port", "--name", "n"], "--port needs a value, got the option --name"],
    [["--token"], "--token needs a value"],
    [["--port"], "--port needs a value"],
  ];
  for (const [argv, message] of cases) {
    assert.throws(
      () => parseServeArgs(["app.ts", ...argv], {}),
      (e) => e instanceof TypeError && e.message === message,
      argv.join(" "),
    );
  }
  // a value that starts with one "-" is a value: a negative number gets its range error
  assert.throws(() => parseServeArgs(["app.ts", "--gpus", "-1"], {}), /--gpus needs an integer ≥ 0, got "-1"/);
  assert.throws(() => parseServeArgs(["app.ts", "--port", "-5"], {}), /--port needs an integer from 0 to 65535/);
  // and an inline one is taken as written
  assert.equal(parseServeArgs(["app.ts", "--token=--dashboard"], {}).token, "--dashboard");
  const o = parseServeArgs(["app.ts", "--port", "0", "--token", "t", "--dashboard"], {});
  assert.deepEqual([o.port, o.token, o.dashboard, o.module], [0, "t", 0, "app.ts"]);
});

test("parseServeArgs takes decimal integers only, for every numeric flag", () => {
  // each flag with its smallest value: Number() would have read every one of these
  const flags: [string, number][] = [
    ["--port", 0],
    ["--gpus", 0],
    ["--cpus", 1],
    ["--max-frame-bytes", 1024],
    ["--drain-ms", 0],
    ["--lease-ms", 0],
    ["--max-connections", 1],
    ["--headers-timeout-ms", 1],
    ["--idle-timeout-ms", 1],
    ["--max-calls-per-connection", 1],
    ["--object-store-bytes", 0],
    ["--max-in-flight", 1],
    ["--max-in-flight-bytes", 1],
  ];
  for (const [flag, min] of flags) {
    for (const bad of ["", " ", "0x1F90", "0x10", "1e3", "0b11", "0o7", "1.5", "+5", "5 ", "Infinity", "lots"]) {
      for (const argv of [[flag, bad], [`${flag}=${bad}`]]) {
        assert.throws(
          () => parseServeArgs(["app.ts", ...argv], {}),
          (e) =>
            e instanceof TypeError && e.message.startsWith(`${flag}`) &&
            e.message.endsWith(`got ${JSON.stringify(bad)}`),
          JSON.stringify(argv),
        );
      }
    }
    const ten = Math.max(10, min);
    assert.equal(Object.values(parseServeArgs(["app.ts", flag, String(ten)], {})).includes(ten), true, flag);
    assert.equal(Object.values(parseServeArgs(["app.ts", flag, `00${ten}`], {})).includes(ten), true, `${flag} 00`);
  }
  assert.throws(() => parseServeArgs(["app.ts", "--dashboard=0x1F90"], {}), /--dashboard needs an integer from 0/);
  assert.throws(
    () => parseServeArgs(["app.ts", "--port", "0x1F90"], {}),
    (e) => e instanceof TypeError && e.message === '--port needs an integer from 0 to 65535, got "0x1F90"',
  );
  assert.throws(() => parseServeArgs(["app.ts", "--port", "65536"], {}), /from 0 to 65535, got "65536"/);
  assert.equal(parseServeArgs(["app.ts", "--port", "65535"], {}).port, 65535);
  assert.throws(
    () => parseServeArgs(["app.ts", "--object-store-bytes", "99999999999999999999"], {}),
    /--object-store-bytes needs an integer from 0 to 9007199254740991/,
  );
});

test("parseServeArgs refuses times in ms past the longest a timer holds (2^31 - 1)", () => {
  for (const flag of ["--drain-ms", "--lease-ms", "--headers-timeout-ms", "--idle-timeout-ms"]) {
    assert.throws(
      () => parseServeArgs(["app.ts", flag, String(2 ** 31)], {}),
      new RegExp(
        `^TypeError: ${flag} needs an integer from [01] to 2147483647 \\(about 24.8 days, the longest a timer holds\\)`,
      ),
    );
  }
  const o = parseServeArgs(["app.ts", "--drain-ms", "2147483647", "--lease-ms", "2147483647"], {});
  assert.deepEqual([o.drainMs, o.leaseMs], [2 ** 31 - 1, 2 ** 31 - 1]);
});

test("parseServeArgs refuses a --peer or --nats URL that is not one, saying why", () => {
  assert.throws(
    () => parseServeArgs(["app.ts", "--peer", "ws://::1:7070"], {}),
    /--peer needs a node's endpoint like ws:\/\/10.0.0.2:7070, got ws:\/\/::1:7070: it is not a URL \(an IPv6 address goes in brackets/,
  );
  assert.throws(() => parseServeArgs(["app.ts", "--peer", "ws://a b:1"], {}), /--peer .*: it is not a URL/);
  assert.deepEqual(parseServeArgs(["app.ts", "--peer", "ws://[::1]:7070"], {}).peers, ["ws://[::1]:7070"]);
  assert.throws(
    () => parseServeArgs(["app.ts", "--name", "n", "--nats", "nats://::1:4222"], {}),
    /--nats needs a NATS server's URL .*: it is not a URL/,
  );
  assert.equal(parseServeArgs(["app.ts", "--name", "n", "--nats", "nats://[::1]:4222"], {}).nats, "nats://[::1]:4222");
});

test("serve refuses a token that is not visible ASCII, naming where it came from and which characters a token may hold", async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const allowed = "token must be visible ASCII characters only (letters, digits and the punctuation ! to ~; no spaces)";
  assert.throws(
    () => parseServeArgs(["app.ts"], { THINKAGAIN_TOKEN: "密码" }),
    (e) =>
      e instanceof TypeError && e.message.startsWith(`THINKAGAIN_TOKEN: ${allowed}`) && !e.message.includes("密码"),
  );
  assert.throws(
    () => parseServeArgs(["app.ts", "--token", "a b"], {}),
    /--token: token must be .*; found a space at index 1$/,
  );
  const dir = mkdtempSync(join(tmpdir(), "thinkagain-token-"));
  try {
    const file = join(dir, "token");
    writeFileSync(file, "pässwörd\n");
    assert.throws(
      () => parseServeArgs(["app.ts", "--token-file", file], {}),
      (e) =>
        e instanceof TypeError &&
        e.message ===
          `--token-file ${file}: ${allowed}, as an HTTP header carries it; found a non-ASCII character at index 1`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("serve takes THINKAGAIN_TOKEN without the whitespace around it (a Secret's trailing newline), as from --token-file", () => {
  assert.equal(parseServeArgs(["app.ts"], { THINKAGAIN_TOKEN: "s3cret-token\n" }).token, "s3cret-token");
  assert.equal(parseServeArgs(["app.ts"], { THINKAGAIN_TOKEN: " \n" }).token, undefined);
});
