// A node's options are checked when it is made: a typo or a value of the wrong type is an error naming it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { NodeServer } from "./node_server.ts";
import { resolveNodeLimits } from "./node_options.ts";

function refuses(fn: () => unknown, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

test("NodeServer refuses an unknown option, naming the closest one", () => {
  refuses(
    () => new NodeServer({ name: "n1", leseMs: 5 } as never),
    /NodeServer "n1": unknown option "leseMs"; did you mean "leaseMs"\?/,
  );
  refuses(() => resolveNodeLimits({ name: "n1", tokn: "s" } as never), /unknown option "tokn"; did you mean "token"\?/);
});

test("NodeServer refuses options that are not an object, or a token that is not a string", () => {
  refuses(() => new NodeServer(null as never), /NodeServer: options must be an object, got null/);
  refuses(() => new NodeServer("n1" as never), /NodeServer: options must be an object, got the string "n1"/);
  refuses(
    () => new NodeServer({ name: "n1", token: 5 } as never),
    /NodeServer "n1": token must be a string, got number 5/,
  );
  refuses(
    () => new NodeServer({ name: "n1", leaseMs: "5" } as never),
    /NodeServer leaseMs must be a number of ms ≥ 0, got the string "5"/,
  );
});

test("NodeServer without a name says it got none, and names an empty one", () => {
  refuses(() => new NodeServer({} as never), /^NodeServer needs options with a non-empty name, got no name$/);
  refuses(() => new NodeServer({ name: "" }), /^NodeServer needs options with a non-empty name, got the string ""$/);
  refuses(() => new NodeServer({ name: 5 } as never), /non-empty name, got number 5$/);
});
