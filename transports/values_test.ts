// Values through real node processes (Bun and Deno, over WebSocket and HTTP): each value of the
// corpus comes back from a node exactly, or `.go()` fails with a TypeError naming the argument, where
// in it and why, before anything is sent.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as ta from "../mod.ts";
import { rejection } from "../core/_test_utils.ts";
import { assertSameValue, VALUE_CORPUS } from "../core/_test_value_corpus.ts";
import { isValueRefusal } from "../core/codec.ts";
import { type Runtime, startNodeProcess } from "../adapters/_test_nodes.ts";
import { Solo } from "../examples/distributed_app.ts";
import { httpTransport } from "./http.ts";
import { encodeMessage } from "./protocol.ts";
import { webSocketTransport } from "./websocket.ts";

const APP = fileURLToPath(new URL("../examples/distributed_app.ts", import.meta.url));
const T = { timeout: 180_000 };
const RUNTIMES: Runtime[] = ["bun", "deno"];

function escaped(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

for (const runtime of RUNTIMES) {
  test(
    `values through a ${runtime} node: each arrives back exactly, or .go() refuses it with a TypeError naming the argument`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      try {
        for (const transport of ["websocket", "http"] as const) {
          await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url })], { transport });
          await mesh.run(async () => {
            const solo = Solo.init();
            await Promise.all(VALUE_CORPUS.map(async ({ name, value, refused, path }) => {
              const what = `${name} over ${transport} to ${runtime}`;
              if (refused === undefined) {
                assertSameValue(await solo.echo.go(value), value, what);
                return;
              }
              const err = await rejection(solo.echo.go(value));
              assert.ok(err instanceof TypeError && isValueRefusal(err), `${what}: got ${String(err)}`);
              // where in the argument; nesting counts from the frame's root, where the call message and
              // its argument list are two levels above an argument
              const inArgs = name.endsWith("deep") ? path!.slice("[0][0]".length) : path!;
              const where = inArgs === "" ? "" : `, at \\[0\\]${escaped(inArgs)}`;
              assert.match(
                err.message,
                new RegExp(`^Cannot call method "echo" on node "n1": argument 0${where}: `),
                what,
              );
              assert.match(err.message, refused, what);
            }));
            // the second argument of a call, deep inside
            const err = await rejection(solo.work.go(1, { docs: [{ id: Symbol("x") }] } as unknown as number));
            assert.ok(err instanceof TypeError);
            assert.equal(
              err.message,
              'Cannot call method "work" on node "n1": argument 1, at [1].docs[0].id: a symbol cannot travel',
            );
            assert.equal(await solo.echo.go("still answering"), "still answering");
          });
        }
      } finally {
        node.kill();
        await node.exited;
      }
    },
  );

  test(
    `a ${runtime} node refuses a typed array of a partial element alike over HTTP and WebSocket (ProtocolError)`,
    T,
    async () => {
      const node = await startNodeProcess(APP, ["--port", "0", "--name", "n1"], { runtime });
      try {
        // a call whose argument is tag 70 (a little-endian Uint32Array) around 3 bytes, built by hand
        const marker = "@@@@";
        const template = encodeMessage({ t: "call", cid: "odd", op: "tokenize", args: [marker] });
        const at = template.findIndex((_, i) =>
          template[i] === 0x64 && template[i + 1] === 0x40 && template[i + 4] === 0x40
        );
        const frame = new Uint8Array([
          ...template.subarray(0, at),
          0xd8,
          70,
          0x43,
          1,
          2,
          3,
          ...template.subarray(at + 5),
        ]);
        for (const transport of [webSocketTransport, httpTransport]) {
          const conn = await transport.connect(node.url);
          try {
            const err = await rejection(conn.request(frame));
            assert.ok(err instanceof ta.ProtocolError, `${transport.name}: got ${String(err)}`);
            assert.match((err as Error).message, /tag 70 holds 3 bytes, not a whole number of 4-byte elements/);
          } finally {
            await conn.close();
          }
        }
        await using mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: node.url })]);
        assert.deepEqual(await mesh.run(() => Solo.init().echo.go(new Uint32Array([7]))), new Uint32Array([7]));
      } finally {
        node.kill();
        await node.exited;
      }
    },
  );
}
