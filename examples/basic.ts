// The README's first example: two ops composed with .go(); prints 18.
// Run: bun examples/basic.ts   or   deno run -A examples/basic.ts
import * as ta from "../mod.ts";

const addOne = ta.op(async function addOne(x: number) {
  return x + 1;
});
const multiply = ta.op("multiply", async (x: number, factor: number) => x * factor);

/** Submits both ops at once; multiply waits for addOne's ref. */
export async function pipeline(x: number): Promise<number> {
  const xRef = addOne.go(x); // ObjectRef<number>, returned at once
  const resultRef = multiply.go(xRef, 3); // a ref is accepted wherever a value is
  return await resultRef;
}

if (import.meta.main) console.log(await pipeline(5));
