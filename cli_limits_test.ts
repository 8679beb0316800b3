import { test } from "node:test";
import assert from "node:assert/strict";
import { parseServeArgs } from "./cli_serve.ts";

test("thinkagain serve parses --max-in-flight and --max-in-flight-bytes, and refuses bad values clearly", () => {
  assert.throws(
    () => parseServeArgs(["app.ts", "--max-in-flight", "0"], {}),
    /--max-in-flight \(or unbounded\) needs an integer ≥ 1, got "0"/,
  );
  assert.throws(
    () => parseServeArgs(["app.ts", "--max-in-flight-bytes", "lots"], {}),
    /--max-in-flight-bytes \(or unbounded\) needs an integer ≥ 1, got "lots"/,
  );
  assert.equal(parseServeArgs(["app.ts", "--max-in-flight", "unbounded"], {}).maxInFlight, "unbounded");
  assert.equal(parseServeArgs(["app.ts", "--max-in-flight-bytes", "1024"], {}).maxInFlightBytes, 1024);
});
