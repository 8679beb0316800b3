import { test } from "node:test";
import assert from "node:assert/strict";
import { pipeline } from "./basic.ts";
import { main as demo } from "./demo.ts";

test("examples/basic.ts computes the README's 18", async () => {
  assert.equal(await pipeline(5), 18);
});

test("examples/demo.ts answers three questions, handles the failing one and profiles the run", async () => {
  const log = console.log;
  const lines: string[] = [];
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    const { answers, failed, summary } = await demo();
    assert.equal(answers.split("\n").filter((l) => l.startsWith("Q: ")).length, 3);
    assert.match(answers, /on gpu-node/);
    assert.equal(failed, "AnswerGenerator.generate failed: empty question");
    assert.equal(summary.ops["AnswerGenerator.generate"].count, 4);
    assert.equal(summary.ops["AnswerGenerator.generate"].failed, 1);
    assert.equal(summary.ops.embed.count, 9);
    assert.ok(lines.some((l) => l.includes("DocRetriever[1] on")), "placement is printed");
  } finally {
    console.log = log;
  }
});

test(
  "examples/distributed.ts runs the RAG pipeline across two node processes (Bun and Deno)",
  { timeout: 120_000 },
  async () => {
    const { main } = await import("./distributed.ts");
    const log = console.log;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const { answers, runtimes, placement } = await main();
      // every line it prints says what it is
      assert.deepEqual(lines.map((l) => l.slice(0, l.indexOf(":"))), [
        "nodes",
        "answer 1 (retrieve on cpu-node, then generate on gpu-node)",
        "answer 2 (retrieve on cpu-node, then generate on gpu-node)",
        "answer 3 (the generator calls the retriever itself, through the handle)",
        "tokenize (a remote op, run on a node)",
        "placement (service on node)",
      ]);
      assert.deepEqual(runtimes, ["bun", "deno"], "both runtimes are installed by npm install");
      assert.equal(answers.length, 4);
      assert.match(answers[0], /^\[gpu-node\] what is a mesh -> 2 docs: /);
      assert.match(answers[2], /^\[gpu-node\] which services can a node run -> 2 docs/);
      assert.equal(answers[3], "bun and deno one mesh");
      assert.deepEqual(placement.sort(), ["Generator on gpu-node", "Retriever on cpu-node"]);
    } finally {
      console.log = log;
    }
  },
);

test(
  "examples/serving.ts: one model node loads the Generator once; a Bun and a Deno pipeline use it at once",
  { timeout: 120_000 },
  async () => {
    const { main } = await import("./serving.ts");
    const log = console.log;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const { bun, deno, info } = await main();
      assert.deepEqual(bun, [
        "the mesh … holds nodes . each node serves [1 docs]",
        "each node … serves what its module registers . [1 docs]",
      ]);
      assert.deepEqual(deno, [
        "drivers connect … and every driver shares it . [1 docs]",
        "a resident model … loads once and every driver shares [1 docs]",
      ]);
      assert.deepEqual({ loads: info.loads, calls: info.calls }, { loads: 1, calls: 4 }, "one model for both drivers");
      assert.equal(lines.length, 5);
      assert.match(lines[4], /^model: loaded 1 time\(s\) on model-node \(GPU 0\), 4 answers$/);
    } finally {
      console.log = log;
    }
  },
);

test(
  "examples/streaming.ts: a token generator on a node streams its tokens in order; a downstream op consumes a stream",
  { timeout: 120_000 },
  async () => {
    const { main } = await import("./streaming.ts");
    const log = console.log;
    const lines: string[] = [];
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const { printed, joined } = await main();
      assert.equal(printed.join("").trim(), 'Answering "what is a mesh": a mesh streams tokens as they are decoded');
      assert.equal(lines.filter((l) => l.startsWith("token: ")).length, printed.length);
      assert.deepEqual(joined, {
        text: 'Answering "why stream": a mesh streams tokens as they are decoded',
        count: 11,
      });
    } finally {
      console.log = log;
    }
  },
);
