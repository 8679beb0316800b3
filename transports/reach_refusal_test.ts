import { test } from "node:test";
import assert from "node:assert/strict";
import * as ta from "../mod.ts";
import { noteReach, refusalExplained } from "./reach_refusal.ts";

const what = 'argument 0 of method "sum" (a result kept there)';

function explained(reach: Parameters<typeof noteReach>[1]): string {
  const link = { node: "gpu1", endpoint: "ws://10.0.0.2:7070" };
  noteReach(link, reach);
  const e = refusalExplained(new ta.AuthError("Connection to ws://10.0.0.2:7070 refused: wrong token"), link, what);
  assert.ok(e instanceof ta.AuthError);
  assert.ok(
    e.message.startsWith(`Node "cpu1" could not reach node "gpu1" at ws://10.0.0.2:7070 for ${what}: `),
    e.message,
  );
  return e.message;
}

test("refusalExplained says what to change: --peer, a token, or the peer's own token", () => {
  assert.match(
    explained({ self: "cpu1", how: "declared", token: false, hasToken: true }),
    /presented none: .*; start node "cpu1" with --peer ws:\/\/10\.0\.0\.2:7070$/,
  );
  assert.match(
    explained({ self: "cpu1", how: "declared", token: false, hasToken: false }),
    /node "cpu1" has none: start node "cpu1" with that token \(--token-file\) and --peer ws:\/\/10\.0\.0\.2:7070$/,
  );
  assert.match(
    explained({ self: "cpu1", how: "peer", token: true, hasToken: true }),
    /refused node "cpu1"'s token .*the two nodes hold different tokens; give node "cpu1" the token of node "gpu1"/,
  );
});

test("refusalExplained leaves other errors, and links no node made, as they are", () => {
  const link = { node: "n", endpoint: "ws://10.0.0.9:1" };
  const auth = new ta.AuthError("refused");
  assert.equal(refusalExplained(auth, link, "x"), auth, "a link a mesh made: its own message");
  noteReach(link, { self: "m", how: "peer", token: true, hasToken: true });
  const other = new ta.TransportError("io", "gone", "ws://10.0.0.9:1");
  assert.equal(refusalExplained(other, link, "x"), other);
});
