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

test("NodeServer and createNodeApp refuse a token that is not visible ASCII (every transport must carry it as it is)", async () => {
  const { createNodeApp } = await import("./server.ts");
  refuses(
    () => new NodeServer({ name: "n1", token: "密码" }),
    /^NodeServer "n1": token must be visible ASCII characters only \(letters, digits and the punctuation ! to ~; no spaces\), as an HTTP header carries it; found a non-ASCII character at index 0$/,
  );
  refuses(
    () => new NodeServer({ name: "n1", token: "s3cret\n" }),
    /found a control character \(tab, newline…\) at index 6$/,
  );
  refuses(
    () =>
      new NodeServer({
        name: "n1",
        peers: ["ws://10.0.0.2:7070", { endpoint: "ws://10.0.0.3:7070", token: "pässwörd" }],
      }),
    /^NodeServer "n1" peers\[1\]: token must be visible ASCII characters only .*; found a non-ASCII character at index 1$/,
  );
  refuses(
    () => createNodeApp((f) => f, { token: "two words" }),
    /^createNodeApp: token must be .*; found a space at index 3$/,
  );
  refuses(
    () => createNodeApp((f) => f, { token: 5 as never }),
    /^createNodeApp: token must be a string, got number 5$/,
  );
  // what every transport carries is taken
  new NodeServer({ name: "n1", token: "s3cret-token_~!" });
  createNodeApp((f) => f, { token: "s3cret-token_~!" });
});

test("NodeServer without a name says it got none, and names an empty one", () => {
  refuses(() => new NodeServer({} as never), /^NodeServer needs options with a non-empty name, got no name$/);
  refuses(() => new NodeServer({ name: "" }), /^NodeServer needs options with a non-empty name, got the string ""$/);
  refuses(() => new NodeServer({ name: 5 } as never), /non-empty name, got number 5$/);
});
