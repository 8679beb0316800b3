/**
 * How a bad argument is named in an error message ("got the string \"x\"", "got an object (Map)").
 * Every validation at the public boundary uses it, so messages read alike.
 *
 * @module
 */

/**
 * A short description of a value for an error message.
 *
 * @param v The value that was passed.
 * @returns E.g. `null`, `undefined`, `function f`, `an object (Map)`, `the string "x"`, `number 3`.
 *
 * @example
 * ```ts
 * import { describe } from "./describe.ts";
 * if (describe("x") !== 'the string "x"') throw new Error("unexpected");
 * ```
 */
export function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "undefined"; // (not "undefined undefined")
  if (typeof v === "function") return `function ${v.name || "(anonymous)"}`;
  if (typeof v === "object") return `an object (${Object.prototype.toString.call(v).slice(8, -1)})`;
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}
