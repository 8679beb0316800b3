// nextTurn, the turn a long piece of work yields with: what clients sent is read between its turns.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { nextTurn, turnsReady } from "./_runtime.ts";

/** A loopback connection: the server's end, and the client's. */
async function connected(): Promise<{ server: net.Socket; client: net.Socket; close: () => Promise<void> }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, "127.0.0.1", r));
  const accepted = new Promise<net.Socket>((r) => listener.once("connection", r));
  const client = net.connect((listener.address() as net.AddressInfo).port, "127.0.0.1");
  await new Promise<void>((r) => client.once("connect", () => r()));
  const server = await accepted;
  return {
    server,
    client,
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => listener.close(() => r()));
    },
  };
}

test("nextTurn reads what a socket holds before its next turn runs, while turns keep coming (Deno's setImmediate reads it dozens of turns later)", async () => {
  const { server, client, close } = await connected();
  try {
    // (on Deno the turn's own connection is made on first use, in a few turns)
    await turnsReady();
    let got = 0;
    server.on("data", (d: Uint8Array) => (got += d.byteLength));
    const turnsTaken: number[] = [];
    for (let round = 1; round <= 20; round++) {
      // written before the turns start: from the next turn on, it is there to be read
      const want = got + 1;
      client.write(new Uint8Array([round]));
      let turns = 0;
      await new Promise<void>((done) => {
        const step = (): void => {
          if (got >= want || turns === 200) return done();
          turns++;
          nextTurn(step);
        };
        nextTurn(step);
      });
      assert.equal(got, want, `round ${round}: the byte never came within 200 turns`);
      turnsTaken.push(turns);
    }
    // a write's bytes may need a turn or two to cross loopback and be read (Bun and Node: at once);
    // a turn that does not read them first leaves them for dozens (once in 61 turns, on Deno)
    assert.ok(Math.max(...turnsTaken) <= 4, `turns before the byte was read, per round: ${turnsTaken.join(", ")}`);
  } finally {
    await close();
  }
});

test("nextTurn runs the callbacks given in a turn in order, and those given while they run in a later turn", async () => {
  const ran: string[] = [];
  await new Promise<void>((done) => {
    for (let i = 0; i < 5; i++) {
      nextTurn(() => {
        ran.push(`first ${i}`);
        if (i === 0) nextTurn(() => (ran.push("second"), done()));
      });
    }
  });
  assert.deepEqual(ran, ["first 0", "first 1", "first 2", "first 3", "first 4", "second"]);
});
