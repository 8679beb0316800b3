/**
 * Unknown keys in option objects and configs are errors: a typo (`endpont` for `endpoint`) would
 * otherwise be ignored without a word, and a remote node silently become a local one. The error
 * names the key and the closest valid one. Options that are not an object at all (`null`, an
 * array, a number) are an error too, and so is an option of the wrong type
 * ({@linkcode checkOptionType}). Each list of valid keys is typed against its options interface
 * ({@linkcode KnownKeys}), so a new option cannot be forgotten here.
 *
 * @module
 */
import { describe } from "./describe.ts";

/**
 * Every key of `T`, each mapped to `true`: the valid keys of an options object, checked by the
 * compiler (a key missing or extra is a type error).
 *
 * @example
 * ```ts
 * import type { KnownKeys } from "./options.ts";
 * const keys: KnownKeys<{ a?: number; b?: string }> = { a: true, b: true };
 * if (Object.keys(keys).length !== 2) throw new Error("unexpected");
 * ```
 */
export type KnownKeys<T> = { readonly [K in keyof Required<T>]: true };

/** Edit distance between `a` and `b` (insertions, deletions, substitutions), case-insensitive. */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The candidate closest to `word` by edit distance (the first of equals).
 *
 * @param word What was given.
 * @param candidates The valid words (at least one).
 * @returns The closest one.
 *
 * @example
 * ```ts
 * import { closest } from "./options.ts";
 * if (closest("endpont", ["name", "endpoint", "gpus"]) !== "endpoint") throw new Error("unexpected");
 * ```
 */
export function closest(word: string, candidates: readonly string[]): string {
  let best = candidates[0], bestDistance = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

/**
 * Throws unless `given` is an options object (not `null`, an array or a primitive) whose keys
 * `known` all lists: what every public function with an options object checks first, so that a
 * typo is never ignored and a bad container fails with a message, not deep inside.
 *
 * @param what Whose options, for the message (`MeshNode "n1"`, `op "embed"`).
 * @param given The value given for the options.
 * @param known The valid keys.
 * @param noun What a key is called there (`option`, or `field` in a config).
 * @throws {TypeError} Naming what was given instead of an object, or the unknown key and the
 * closest valid one.
 *
 * @example
 * ```ts
 * import { checkKnownKeys } from "./options.ts";
 * import { throws } from "node:assert/strict";
 * throws(
 *   () => checkKnownKeys('MeshNode "n1"', { endpont: "ws://h:1" }, { gpus: true, cpus: true, endpoint: true }),
 *   /unknown option "endpont"; did you mean "endpoint"\?/,
 * );
 * throws(() => checkKnownKeys("serveInMemory", 5, { token: true }), /serveInMemory: options must be an object, got number 5/);
 * ```
 */
export function checkKnownKeys(
  what: string,
  given: unknown,
  known: Readonly<Record<string, true>>,
  noun = "option",
): asserts given is object {
  if (given === null || typeof given !== "object" || Array.isArray(given)) {
    throw new TypeError(`${what}: ${noun}s must be an object, got ${describe(given)}`);
  }
  for (const key of Object.keys(given)) {
    if (Object.hasOwn(known, key)) continue;
    const valid = Object.keys(known);
    throw new TypeError(
      `${what}: unknown ${noun} ${JSON.stringify(key)}; did you mean "${closest(key, valid)}"? (valid: ${
        valid.join(", ")
      })`,
    );
  }
}

/** The kinds of value {@linkcode checkOptionType} tells apart. */
export type OptionType = "string" | "boolean" | "function" | "number";

/**
 * Throws when the option `key` was given (is not `undefined`) but is not of `type`.
 *
 * @param what Whose option, for the message (`Mesh`, `op "embed"`).
 * @param key The option's name.
 * @param value What was given for it.
 * @param type What it must be.
 * @throws {TypeError} Naming the option, what it must be and what it got.
 *
 * @example
 * ```ts
 * import { checkOptionType } from "./options.ts";
 * import { throws } from "node:assert/strict";
 * checkOptionType("Mesh", "token", undefined, "string"); // not given: fine
 * throws(() => checkOptionType("Mesh", "token", 5, "string"), /Mesh: token must be a string, got number 5/);
 * ```
 */
export function checkOptionType(what: string, key: string, value: unknown, type: OptionType): void {
  if (value === undefined || typeof value === type) return;
  throw new TypeError(`${what}: ${key} must be a ${type}, got ${describe(value)}`);
}
