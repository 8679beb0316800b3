/**
 * thinkagain: distributed AI pipelines from plain async functions and classes.
 *
 * `.go()` submits work and returns an `ObjectRef` at once; refs passed into other `.go()` calls form
 * a DAG that runs as parallel as its dependencies allow; services are stateful actors placed on a
 * `Mesh` of nodes.
 *
 * @example The shortest useful program
 * ```ts
 * import * as ta from "./mod.ts";
 * const addOne = ta.op(async function addOne(x: number) { return x + 1; });
 * const multiply = ta.op("multiply", async (x: number, factor: number) => x * factor);
 * const result = await multiply.go(addOne.go(5), 3);
 * if (result !== 18) throw new Error(`expected 18, got ${result}`);
 * ```
 *
 * @module
 */
export * from "./core/mod.ts";
// Remote nodes: importing the node module installs the remote replica factory into the core.
export { NodeServer, type NodeServerOptions } from "./transports/node.ts";
export { PROTOCOL_VERSION } from "./transports/protocol.ts";
