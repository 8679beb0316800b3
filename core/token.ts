/**
 * What a token may hold. A token travels as it is in an HTTP header (`Authorization: Bearer
 * <token>`, on `POST /rpc` and in the probe that explains a refused WebSocket upgrade) and in the
 * headers of NATS requests: header values are bytes, and `fetch` refuses one outside Latin-1 before
 * sending anything (a token like `密码` worked over `ws://`, where it is base64url-encoded, and failed
 * every `http://` call). Bearer tokens (RFC 6750) are ASCII, and a space or a character past `~`
 * reads differently from one HTTP stack to another, so a token is what every transport carries
 * unchanged: visible ASCII, no spaces. Both ends check it (a `Mesh`, a `NodeServer`, the node's app,
 * `thinkagain serve`), so a token one end takes works on every transport; it is never encoded
 * silently (a node and a driver that encoded differently would refuse each other without a word).
 *
 * @module
 */

/** What a token may hold, in the words every error about one uses. */
export const TOKEN_CHARACTERS =
  "visible ASCII characters only (letters, digits and the punctuation ! to ~; no spaces), as an HTTP header carries it";

/** Every character a token may hold: `!` (0x21) to `~` (0x7e), at least one. */
const TOKEN = /^[\x21-\x7e]+$/;

/**
 * What in `token` no transport can carry as it is, or `undefined` when it is a valid token. Never
 * quotes the token: it names the kind of character and its index.
 *
 * @param token The token.
 * @returns E.g. `a space at index 3`, `a non-ASCII character at index 0`, `an empty string`.
 *
 * @example
 * ```ts
 * import { tokenFlaw } from "./token.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(tokenFlaw("s3cret-Token_~!"), undefined);
 * strictEqual(tokenFlaw("pass word"), "a space at index 4");
 * strictEqual(tokenFlaw("密码"), "a non-ASCII character at index 0");
 * strictEqual(tokenFlaw(""), "an empty string");
 * ```
 */
export function tokenFlaw(token: string): string | undefined {
  if (TOKEN.test(token)) return undefined;
  if (token === "") return "an empty string";
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c === 0x20) return `a space at index ${i}`;
    if (c < 0x20 || c === 0x7f) return `a control character (tab, newline…) at index ${i}`;
    if (c > 0x7e) return `a non-ASCII character at index ${i}`;
  }
  return undefined; // (unreachable: the pattern failed on one of them)
}

/**
 * Throws unless `token` is a token every transport carries as it is (see {@linkcode tokenFlaw});
 * `undefined` (no token) passes.
 *
 * @param who Whose token, for the message (`Mesh`, `NodeServer "n1"`, `THINKAGAIN_TOKEN`).
 * @param token The token (already trimmed where the caller drops surrounding whitespace).
 * @throws {TypeError} Saying which characters a token may hold and what was found (never the token).
 *
 * @example
 * ```ts
 * import { checkToken } from "./token.ts";
 * import { throws } from "node:assert/strict";
 * checkToken("Mesh", "s3cret");
 * checkToken("Mesh", undefined);
 * throws(() => checkToken("Mesh", "密码"), /Mesh: token must be visible ASCII characters only .*; found a non-ASCII character at index 0/);
 * ```
 */
export function checkToken(who: string, token: string | undefined): void {
  if (token === undefined) return;
  const flaw = tokenFlaw(token);
  if (flaw !== undefined) throw new TypeError(`${who}: token must be ${TOKEN_CHARACTERS}; found ${flaw}`);
}
