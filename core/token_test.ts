// A token is what every transport carries as it is (an HTTP header): a Mesh refuses one that is not
// visible ASCII when it is built, rather than reaching nodes over ws:// and failing every http:// call.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Mesh, MeshNode } from "./mesh.ts";
import { TOKEN_CHARACTERS, tokenFlaw } from "./token.ts";

test("tokenFlaw names what no header can carry (never the token); visible ASCII passes", () => {
  assert.equal(tokenFlaw("s3cret-Token_.~!+/="), undefined);
  assert.equal(tokenFlaw("a".repeat(4096)), undefined);
  assert.equal(tokenFlaw("密码"), "a non-ASCII character at index 0");
  assert.equal(tokenFlaw("pässwörd"), "a non-ASCII character at index 1"); // Latin-1: fetch takes it, Bearer is ASCII
  assert.equal(tokenFlaw("two words"), "a space at index 3");
  assert.equal(tokenFlaw("line\nbreak"), "a control character (tab, newline…) at index 4");
  assert.equal(tokenFlaw("del\x7f"), "a control character (tab, newline…) at index 3");
  assert.equal(tokenFlaw(""), "an empty string");
});

test("Mesh refuses a token that is not visible ASCII when it is built, saying which characters a token may hold", () => {
  for (const [token, found] of [["密码", "a non-ASCII character at index 0"], ["two words", "a space at index 3"]]) {
    assert.throws(
      () => new Mesh([new MeshNode("n1")], { token }),
      (e) =>
        e instanceof TypeError && e.message === `Mesh: token must be ${TOKEN_CHARACTERS}; found ${found}` &&
        !e.message.includes(token),
    );
  }
  // whitespace around it is dropped first (a Secret's newline); nothing left is no token at all
  assert.throws(
    () => new Mesh([new MeshNode("n1")], { token: " \n" }),
    /Mesh: token must be .*; found an empty string/,
  );
});

test("Mesh still takes a visible-ASCII token, with the whitespace around it dropped", async () => {
  await using mesh = new Mesh([new MeshNode("n1")], { token: "s3cret~token\n" });
  assert.equal(mesh.options.token, "s3cret~token");
});
