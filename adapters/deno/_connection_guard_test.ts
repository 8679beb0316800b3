// The Deno guard's relay, with connections made here (no sockets, no runtime API): once a
// connection is a WebSocket, the relay puts its pings between the server's frames wherever the
// server's reads cut them, each carrying the bytes relayed before it, and goes on past its window
// only as the client's pongs (cut anywhere too) acknowledge them, telling the server behind how much
// of its messages the client has read.
import { test } from "node:test";
import assert from "node:assert/strict";
import { concatBytes as concat, eventually, gate } from "../../core/_test_utils.ts";
import {
  type DenoConn,
  type DenoListener,
  guardConnections,
  holdRelayInput,
  RELAY_TOKEN_HEADER,
  unboundRelay,
  watchRelayReads,
} from "./_connection_guard.ts";

/** One direction of a connection: what was pushed, read back in pieces as the reader asks. */
class Pipe {
  #chunks: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  push(bytes: Uint8Array): void {
    this.#chunks.push(bytes);
    this.#wake?.();
  }
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) await new Promise<void>((r) => (this.#wake = r));
    this.#wake = undefined;
    const c = this.#chunks[0];
    const n = Math.min(c.byteLength, buffer.byteLength);
    buffer.set(c.subarray(0, n));
    if (n === c.byteLength) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    return n;
  }
}

function conn(input: Pipe, onWrite: (bytes: Uint8Array) => void): DenoConn {
  return {
    read: (buffer) => input.read(buffer),
    write: (data) => (onWrite(data.slice()), Promise.resolve(data.byteLength)),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
}

/** Cuts `bytes` into pieces of the sizes in `sizes`, in turn. */
function cut(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  for (let at = 0, i = 0; at < bytes.byteLength; i++) {
    const n = sizes[i % sizes.length];
    pieces.push(bytes.subarray(at, at + n));
    at += n;
  }
  return pieces;
}

/** A server's (unmasked) binary frame of `n` bytes, each `fill`. */
function frame(n: number, fill: number): Uint8Array {
  const head = n < 126 ? [0x82, n] : n < 0x10000 ? [0x82, 126, n >> 8, n & 0xff] : [
    0x82,
    127,
    0,
    0,
    0,
    0,
    (n >>> 24) & 0xff,
    (n >> 16) & 0xff,
    (n >> 8) & 0xff,
    n & 0xff,
  ];
  const f = new Uint8Array(head.length + n).fill(fill);
  f.set(head);
  return f;
}

const ascii = (s: string) => new TextEncoder().encode(s);

/** A guard on `listener` with timeouts no test reaches, each connection's server behind made by `upstream`. */
function guardOf(listener: DenoListener, maxMessageBytes: number, upstream: () => DenoConn) {
  return guardConnections(listener, {
    maxConnections: 10,
    headersTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
    maxMessageBytes,
    connectUpstream: () => Promise.resolve(upstream()),
  });
}

/** A guard with one WebSocket connection through it, made here: its client, and the server's side. */
async function upgraded(answerPings: boolean) {
  const fromClient = new Pipe();
  const fromServer = new Pipe();
  const headSent = gate();
  const toServer: Uint8Array[] = [];
  const client = new ClientSide(fromClient, answerPings);
  let accepted = false;
  const listener: DenoListener = {
    accept: () => accepted ? new Promise(() => {}) : (accepted = true, Promise.resolve(conn(fromClient, client.take))),
    close: () => {},
  };
  const guard = guardOf(listener, 1 << 30, () =>
    conn(fromServer, (b) => {
      toServer.push(b);
      if (new TextDecoder().decode(b).includes("\r\n\r\n")) headSent.open();
    }));
  fromClient.push(ascii("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
  await headSent.promise;
  // the upgrade's answer and frames of every header size (2 MiB), read by the relay in odd pieces
  // (and a control frame of the server's, a pong, whose payload is not a message's)
  const frames = [frame(10, 1), frame(50_000, 2), new Uint8Array([0x8a, 4, 1, 2, 3, 4]), frame(0, 3)];
  for (let i = 0; i < 40; i++) frames.push(frame(i % 3 === 0 ? 70_000 : 40_000, 4 + i));
  const head = ascii("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
  const stream = concat([head, ...frames]);
  // (the answer's head in one read, as a server writes it, with the first frame's first bytes)
  fromServer.push(stream.subarray(0, head.byteLength + 5));
  for (const piece of cut(stream.subarray(head.byteLength + 5), [1, 3, 7, 13, 65_536, 100_000, 2])) {
    fromServer.push(piece);
  }
  return {
    guard,
    client,
    stream,
    head: () => new TextDecoder().decode(concat(toServer)),
    /** Sends bytes of the client's (its frames), as they are. */
    send: (bytes: Uint8Array) => fromClient.push(bytes),
    /** The client's bytes the server has got after its head. */
    sentOn: () => {
      const all = concat(toServer);
      const end = new TextDecoder().decode(all).indexOf("\r\n\r\n") + 4;
      return all.subarray(end);
    },
  };
}

/** A client's (masked) frame of `n` bytes, each `fill`: binary (or `opcode`), final unless `fin` is false. */
function clientFrame(n: number, fill: number, opcode = 2, fin = true): Uint8Array {
  const len = n < 126 ? [0x80 | n] : [0x80 | 126, n >> 8, n & 0xff];
  const f = new Uint8Array(1 + len.length + 4 + n).fill(fill);
  f.set([(fin ? 0x80 : 0) | opcode, ...len, 1, 2, 3, 4]);
  return f;
}

test("the Deno guard pings a WebSocket client between the server's frames, wherever its reads cut them", async () => {
  const { guard, client, stream } = await upgraded(true);
  try {
    const all = await client.until(stream.byteLength);
    // every byte of the server's, in order, with the relay's pings between its frames
    assert.deepEqual(all.data, stream);
    assert.ok(all.pings.length >= 4, `${all.pings.length} pings for ${stream.byteLength} bytes`);
    const ends = frameEnds(stream);
    for (const p of all.pings) {
      assert.equal(p.count, p.at, `a ping after ${p.at} bytes says ${p.count}`);
      assert.ok(ends.has(p.at), `a ping after ${p.at} bytes, inside a frame`);
    }
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard answers the client's pongs with an empty pong of its own, between the server's frames", async () => {
  // (so that a client whose socket holds small writes until the earlier ones are acknowledged, as
  // Deno's WebSocket client does, gets its pong acknowledged at once, not after a delayed ACK)
  const { guard, client, stream } = await upgraded(true);
  try {
    const all = await client.until(stream.byteLength);
    assert.ok(await eventually(() => client.answers.length > 0), "no pong of the client's was answered");
    // the server's frames are whole and in order around the answers (none was put inside a frame)
    assert.deepEqual(concat(client.data), stream);
    assert.ok(
      client.answers.length <= client.pongsSent,
      `${client.answers.length} answers to ${client.pongsSent} pongs`,
    );
    const ends = frameEnds(stream);
    for (const a of client.answers) {
      assert.ok(a.pongsSent > 0, "an answer before any pong");
      assert.ok(ends.has(a.at), `an answer after ${a.at} bytes, inside a frame`);
    }
    assert.ok(all.pings.length >= 4);
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard answers the client's one-way frames (the node's KIND_NOTIFY) with an empty pong, not its requests", async () => {
  // (a one-way frame gets no reply from the node: without an answer, a client that holds small
  // writes until the earlier ones are acknowledged waits for the server's delayed ACK)
  const { guard, client, stream, send, sentOn } = await upgraded(true);
  try {
    await client.until(stream.byteLength);
    assert.ok(await eventually(() => client.answers.length >= 1), "no pong of the client's was answered");
    // wait for the answers to the pings to settle, then count
    let settled = -1;
    assert.ok(
      await eventually(() => {
        const n = client.answers.length;
        const same = n === settled;
        settled = n;
        return same;
      }),
    );
    const key = [0x11, 0x22, 0x33, 0x44];
    // (a payload past 125 bytes has a 16-bit length before the key)
    const masked = (payload: number[]) =>
      new Uint8Array([
        0x82,
        ...(payload.length < 126 ? [0x80 | payload.length] : [0x80 | 126, payload.length >> 8, payload.length & 0xff]),
        ...key,
        ...payload.map((b, i) => b ^ key[i & 3]),
      ]);
    // a request (kind 0): the node's reply will acknowledge it, so no answer; then a one-way frame
    const request = masked([0, 1, 0, 0, 0, 7]);
    const oneWay = masked([2, 0, 0, 0, 0, 9]);
    send(request);
    assert.ok(await eventually(() => sentOn().byteLength >= request.byteLength));
    const before = client.answers.length;
    send(oneWay);
    assert.ok(await eventually(() => client.answers.length === before + 1), "the one-way frame got no answer");
    // the same with 200-byte frames (a free of many results): the request gets none, the one-way one
    const longRequest = masked([0, 2, 0, 0, 0, ...new Array(195).fill(5)]);
    const longOneWay = masked([2, 0, 0, 0, 0, ...new Array(195).fill(6)]);
    send(longRequest);
    assert.ok(await eventually(() => sentOn().byteLength >= 2 * request.byteLength + longRequest.byteLength));
    assert.equal(client.answers.length, before + 1, "a request of 200 bytes was answered");
    send(longOneWay);
    assert.ok(await eventually(() => client.answers.length === before + 2), "the 200-byte one-way frame got no answer");
    // all four frames reached the server as they were
    const frames = [request, oneWay, longRequest, longOneWay];
    const tail = sentOn().subarray(-frames.reduce((n, f) => n + f.byteLength, 0));
    assert.deepEqual(tail, concat(frames));
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard relays no more of the server's once 512 KiB pinged are unanswered, and goes on as the pongs come", async () => {
  const { guard, client, stream } = await upgraded(false);
  try {
    // once the relay has nothing left to do (no I/O here: every promise it chained has settled by
    // the next turn of the event loop)
    await new Promise<void>((resolve) => setImmediate(resolve));
    const got = client.received;
    assert.ok(got < stream.byteLength, `all ${got} bytes were relayed to a client that answered no ping`);
    assert.ok(client.pings.length > 0 && client.pings.at(-1)!.count >= 512 * 1024, "pinged less than the window");
    assert.ok(got <= 1024 * 1024, `${got} bytes relayed to a client that answered no ping`);
    client.answer();
    const all = await client.until(stream.byteLength);
    assert.deepEqual(all.data, stream);
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard names a connection to the server behind, which can then lift its bound as it closes it", async () => {
  const { guard, client, stream, head } = await upgraded(false);
  let token = "";
  try {
    // the request line, then the relay's token (random, the client never sees it), then the client's head
    const m = new RegExp(`^GET /ws HTTP/1\\.1\r\n${RELAY_TOKEN_HEADER}: ([0-9a-f-]{36})\r\nUpgrade: websocket\r\n\r\n$`)
      .exec(head());
    assert.ok(m, `the head the server got: ${JSON.stringify(head())}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.ok(client.received < stream.byteLength, "all was relayed to a client that answered no ping");
    token = m[1];
    assert.equal(unboundRelay("not " + token), false);
    // the server closes the connection: what it sent (its close frame last) goes out unanswered
    assert.equal(unboundRelay(m[1]), true);
    const all = await client.until(stream.byteLength);
    assert.deepEqual(all.data, stream);
  } finally {
    await guard.closeAll(0);
  }
  // a closed connection's token names nothing any more
  assert.equal(unboundRelay(token), false);
});

test("the Deno guard tells the server behind how much of its messages the client has read, as its pongs come", async () => {
  const { guard, client, stream, head } = await upgraded(false);
  try {
    const token = /x-thinkagain-relay: ([0-9a-f-]{36})\r\n/.exec(head())![1];
    const reads: number[] = [];
    assert.equal(watchRelayReads("not " + token, () => {}), false);
    assert.equal(watchRelayReads(token, (read) => reads.push(read)), true);
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(reads, [], "told of reads before any pong came");
    client.answer();
    const all = await client.until(stream.byteLength);
    // each time a pong came: the payloads of the data frames before its ping (no head, no frame
    // headers, no control frame), growing
    const payloads = dataPayloadsBefore(stream);
    assert.ok(reads.length > 0, "never told of a read");
    assert.deepEqual(reads, all.pings.map((p) => payloads(p.count)).slice(0, reads.length));
    assert.equal(reads.at(-1), payloads(all.pings.at(-1)!.count));
    for (let i = 1; i < reads.length; i++) assert.ok(reads[i] > reads[i - 1], `reads ${reads.join(", ")}`);
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard holds what a client sends while the server behind asks, says how much, and hands it on in order when let go", async () => {
  const { guard, client, stream, head, send, sentOn } = await upgraded(false);
  try {
    const token = /x-thinkagain-relay: ([0-9a-f-]{36})\r\n/.exec(head())![1];
    const told: [number, number][] = [];
    const reads: number[] = [];
    watchRelayReads(token, (read) => reads.push(read));
    assert.equal(holdRelayInput("not " + token, true), false);
    assert.equal(holdRelayInput(token, true, (messages, bytes) => told.push([messages, bytes])), true);
    // (the client speaks WebSocket once it has the server's answer)
    assert.ok(await eventually(() => client.received > 0));
    // three messages (the second in two frames, a ping of the client's between them), cut anywhere
    const messages = concat([
      clientFrame(20, 1),
      clientFrame(300, 2, 2, false),
      clientFrame(5, 9, 9),
      clientFrame(40_000, 3, 0, true),
      clientFrame(1, 4),
    ]);
    for (const piece of cut(messages, [7, 1, 3000, 11])) send(piece);
    assert.ok(await eventually(() => told.at(-1)?.[1] === messages.byteLength), `told ${JSON.stringify(told)}`);
    assert.deepEqual(told.at(-1), [3, messages.byteLength]);
    assert.equal(sentOn().byteLength, 0, "the server got bytes of a held client");
    // its pongs still count while held (and are held with the rest)
    client.answer();
    await client.until(stream.byteLength);
    assert.ok(reads.length > 0, "no read told while held");
    assert.ok(await eventually(() => told.at(-1)![1] > messages.byteLength), `told ${JSON.stringify(told)}`);
    assert.equal(sentOn().byteLength, 0, "the server got bytes of a held client");
    // let go: all of it, in order, then what comes next goes on at once
    assert.equal(holdRelayInput(token, false), true);
    assert.ok(await eventually(() => withoutPongs(sentOn()).byteLength === messages.byteLength));
    assert.deepEqual(told.at(-1), [0, 0]);
    assert.deepEqual(withoutPongs(sentOn()), messages);
    const next = clientFrame(10, 5);
    send(next);
    assert.ok(await eventually(() => withoutPongs(sentOn()).byteLength === messages.byteLength + next.byteLength));
    assert.deepEqual(withoutPongs(sentOn()), concat([messages, next]));
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard hands on what it holds past 1 MiB, and what it held when the server behind closes", async () => {
  const { guard, client, head, send, sentOn } = await upgraded(false);
  try {
    const token = /x-thinkagain-relay: ([0-9a-f-]{36})\r\n/.exec(head())![1];
    const told: [number, number][] = [];
    holdRelayInput(token, true, (messages, bytes) => told.push([messages, bytes]));
    assert.ok(await eventually(() => client.received > 0));
    // 1.5 MiB of messages while held: past 1 MiB the relay hands on all it held, then holds again
    const messages = concat(Array.from({ length: 48 }, (_, i) => clientFrame(32_000, i)));
    send(messages);
    assert.ok(await eventually(() => sentOn().byteLength > 0));
    const maxHeld = Math.max(...told.map(([, bytes]) => bytes));
    assert.ok(maxHeld <= 1024 * 1024, `held ${maxHeld} bytes`);
    assert.ok(told.some(([m, b]) => m === 0 && b === 0), `told ${JSON.stringify(told)}`);
    assert.ok(await eventually(() => told.at(-1)![1] + sentOn().byteLength === messages.byteLength));
    assert.ok(told.at(-1)![1] > 0, "nothing held after the first 1 MiB went on");
    // the server closes the connection: what is held goes to it (the client's answer to its close
    // frame may be there)
    assert.equal(unboundRelay(token), true);
    assert.ok(await eventually(() => sentOn().byteLength === messages.byteLength));
    assert.deepEqual(sentOn(), messages);
  } finally {
    await guard.closeAll(0);
  }
});

test("the Deno guard closes a connection whose client sent bytes after its upgrade request, before the server's answer", async () => {
  // (RFC 6455 §4.1: a client waits for the answer; taken for frames, such bytes would be read from
  // the middle of one, and a message past the limit could pass unseen)
  for (const early of [true, false]) {
    const fromClient = new Pipe();
    const fromServer = new Pipe();
    const toClient: Uint8Array[] = [];
    let closed = false;
    const headSent = gate();
    let accepted = false;
    const client: DenoConn = { ...conn(fromClient, (b) => toClient.push(b)), close: () => (closed = true) };
    const listener: DenoListener = {
      accept: () => accepted ? new Promise(() => {}) : (accepted = true, Promise.resolve(client)),
      close: () => {},
    };
    const guard = guardOf(listener, 1 << 20, () => conn(fromServer, () => headSent.open()));
    try {
      const head = ascii("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
      fromClient.push(early ? concat([head, clientFrame(10, 1)]) : head);
      await headSent.promise;
      fromServer.push(ascii("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
      if (early) {
        assert.ok(await eventually(() => closed), "the connection stayed open");
        assert.equal(toClient.length, 0, "the server's answer was relayed");
      } else {
        // the answer goes through, and the connection stays
        assert.ok(await eventually(() => toClient.length > 0));
        assert.equal(guard.connections, 1);
      }
    } finally {
      await guard.closeAll(0);
    }
  }
});

test("the Deno guard hands the server behind each connection's own first bytes, whatever came before on another", async () => {
  // connections one after another (the first reads' buffers are kept for the next connections)
  const heads = [
    "GET /" + "a".repeat(3000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /b HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\n\r\n",
  ];
  const accepts: ((conn: DenoConn) => void)[] = [];
  const listener: DenoListener = {
    accept: () => new Promise((resolve) => accepts.push(resolve)),
    close: () => {},
  };
  const got: Uint8Array[][] = [];
  const arrived: (() => void)[] = [];
  const guard = guardOf(listener, 1 << 20, () => {
    const mine: Uint8Array[] = [];
    got.push(mine);
    const done = arrived[got.length - 1];
    return conn(new Pipe(), (b) => (mine.push(b), done()));
  });
  try {
    for (const [i, head] of heads.entries()) {
      const seen = gate();
      arrived[i] = seen.open;
      while (accepts.length <= i) await new Promise<void>((resolve) => setImmediate(resolve));
      const fromClient = new Pipe();
      accepts[i](conn(fromClient, () => {}));
      fromClient.push(ascii(head));
      await seen.promise;
      const text = new TextDecoder().decode(concat(got[i]));
      // the request line, the relay's token, then the rest of this connection's head, and nothing else
      const line = head.slice(0, head.indexOf("\r\n") + 2);
      assert.ok(
        new RegExp(`^${line.replace(/[/.]/g, "\\$&")}${RELAY_TOKEN_HEADER}: [0-9a-f-]{36}\r\n`).test(text),
        text.slice(0, 100),
      );
      assert.equal(text.replace(/x-thinkagain-relay: [0-9a-f-]{36}\r\n/, ""), head);
    }
  } finally {
    await guard.closeAll(0);
  }
});

/**
 * The timers set (by `setTimeout`) while `during` runs and still pending when it ends: what would
 * keep a program open after it (a timer set and cleared, or fired, is not counted).
 */
async function timersLeftBy(during: () => Promise<void>): Promise<number> {
  const g = globalThis as unknown as {
    setTimeout: (fn: () => void, ms?: number) => unknown;
    clearTimeout: (id: unknown) => void;
  };
  const set = g.setTimeout, clear = g.clearTimeout;
  const pending = new Set<unknown>();
  g.setTimeout = (fn, ms) => {
    const id = set(() => (pending.delete(id), fn()), ms);
    pending.add(id);
    return id;
  };
  g.clearTimeout = (id) => (pending.delete(id), clear(id));
  try {
    await during();
  } finally {
    g.setTimeout = set;
    g.clearTimeout = clear;
  }
  for (const id of pending) clear(id);
  return pending.size;
}

/** A connection whose reads end (`null`) once it is closed, as a socket's do. */
function closableConn(onWrite: (bytes: Uint8Array) => void, onCloseWrite = () => {}) {
  const input = new Pipe();
  let ended: ((n: null) => void) | undefined;
  const end = new Promise<null>((r) => (ended = r));
  const c: DenoConn = {
    read: (buffer) => Promise.race([input.read(buffer), end]),
    write: (data) => (onWrite(data.slice()), Promise.resolve(data.byteLength)),
    closeWrite: () => (onCloseWrite(), Promise.resolve()),
    close: () => ended!(null),
  };
  return { conn: c, push: (bytes: Uint8Array) => input.push(bytes) };
}

test("the Deno guard's closeAll leaves no timer behind once a connection served a request (a program ends at once)", async () => {
  const answered = gate(), headSent = gate(), clientEnded = gate();
  const client = closableConn(() => answered.open(), () => clientEnded.open());
  let accepted = false;
  const listener: DenoListener = {
    accept: () => accepted ? new Promise(() => {}) : (accepted = true, Promise.resolve(client.conn)),
    close: () => {},
  };
  const server = closableConn(() => headSent.open());
  const guard = guardOf(listener, 1 << 20, () => server.conn);
  client.push(ascii("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  await headSent.promise;
  server.push(ascii("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"));
  await answered.promise;
  const left = await timersLeftBy(async () => {
    await guard.closeAll(0);
    // the relay's pump from the server ends (its read ends with the close) and ends the client's side
    await clientEnded.promise;
  });
  assert.equal(left, 0, "a timer set for the closed connection still holds the program open");
});

test("the Deno guard's stopAccepting ends the pause after an accept error (no timer left behind)", async () => {
  const failed = gate();
  let accepts = 0;
  const listener: DenoListener = {
    accept: () => accepts++ === 0 ? Promise.reject(new Error("Too many open files")) : new Promise(() => {}),
    close: () => {},
  };
  const left = await timersLeftBy(async () => {
    const guard = guardConnections(listener, {
      maxConnections: 10,
      headersTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      maxMessageBytes: 1 << 20,
      connectUpstream: () => Promise.reject(new Error("unused")),
      onAcceptError: () => failed.open(),
    });
    await failed.promise; // the loop pauses now, before it accepts again
    guard.stopAccepting();
    await guard.closeAll(0);
  });
  assert.equal(left, 0, "the accept loop's pause outlives the guard");
});

/** For `stream` (an upgrade's head, then frames): the data frames' payload bytes before offset `at` (a frame's end). */
function dataPayloadsBefore(stream: Uint8Array): (at: number) => number {
  const sums = framesOf(stream);
  return (end) => {
    const sum = sums.get(end);
    if (sum === undefined) throw new Error(`no frame ends at ${end}`);
    return sum;
  };
}

/**
 * The client: takes what the relay writes (the server's bytes and the relay's pings, told apart by
 * following the frames after the upgrade's head) and answers each ping with its pong, sent back a
 * byte at a time.
 */
class ClientSide {
  #got = new Uint8Array(8 << 20);
  #have = 0;
  #at = -1; // where the next frame starts once the head was read
  #wake: (() => void) | undefined;
  readonly data: Uint8Array[] = [];
  #dataBytes = 0;
  readonly pings: { at: number; count: number }[] = [];
  /** The relay's empty pongs: after how many of the server's bytes, and how many pongs of ours were sent by then. */
  readonly answers: { at: number; pongsSent: number }[] = [];
  pongsSent = 0;
  readonly #back: Pipe;
  #answering: boolean;
  /** Pongs not sent yet (while not answering). */
  #held: Uint8Array[] = [];

  constructor(back: Pipe, answering: boolean) {
    this.#back = back;
    this.#answering = answering;
  }

  /** Bytes of the server's received so far. */
  get received(): number {
    return this.#dataBytes;
  }

  /** Answers the pings held so far, and the next ones as they come. */
  answer(): void {
    this.#answering = true;
    for (const pong of this.#held.splice(0)) this.#pong(pong);
  }

  /** Sends a pong back a byte at a time. */
  #pong(pong: Uint8Array): void {
    this.pongsSent++;
    for (const b of pong) this.#back.push(new Uint8Array([b]));
  }

  take = (bytes: Uint8Array): void => {
    this.#got.set(bytes, this.#have);
    this.#have += bytes.byteLength;
    this.#parse();
    this.#wake?.();
  };

  async until(bytes: number): Promise<{ data: Uint8Array; pings: { at: number; count: number }[] }> {
    while (this.#dataBytes < bytes) await new Promise<void>((r) => (this.#wake = r));
    return { data: concat(this.data), pings: this.pings };
  }

  #parse(): void {
    const g = this.#got;
    if (this.#at < 0) {
      const end = new TextDecoder().decode(g.subarray(0, this.#have)).indexOf("\r\n\r\n");
      if (end < 0) return;
      this.#at = end + 4;
      this.#keep(0, this.#at);
    }
    for (;;) {
      const at = this.#at;
      if (this.#have - at < 2) return;
      const len7 = g[at + 1] & 0x7f;
      const head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
      if (this.#have - at < head) return;
      const n = len7 === 126
        ? (g[at + 2] << 8) | g[at + 3]
        : len7 === 127
        ? new DataView(g.buffer, at + 6, 4).getUint32(0)
        : len7;
      if (this.#have - at < head + n) return;
      this.#at = at + head + n;
      if (g[at] === 0x8a && n === 0) {
        // the relay's answer to a pong of ours (the server's own frames here carry payloads)
        this.answers.push({ at: this.#dataBytes, pongsSent: this.pongsSent });
      } else if (g[at] === 0x89) {
        const payload = g.slice(at + head, at + head + n);
        this.pings.push({ at: this.#dataBytes, count: new DataView(payload.buffer).getFloat64(0) });
        const key = [9, 8, 7, 6];
        const pong = new Uint8Array([0x8a, 0x80 | n, ...key, ...payload.map((b, i) => b ^ key[i & 3])]);
        if (this.#answering) this.#pong(pong);
        else this.#held.push(pong);
      } else this.#keep(at, this.#at);
    }
  }

  #keep(from: number, to: number): void {
    this.data.push(this.#got.slice(from, to));
    this.#dataBytes += to - from;
  }
}

/** A client's frames (masked) without its pongs. */
function withoutPongs(bytes: Uint8Array): Uint8Array {
  const kept: Uint8Array[] = [];
  for (let at = 0; at < bytes.byteLength;) {
    const len7 = bytes[at + 1] & 0x7f;
    const head = 2 + (len7 === 126 ? 2 : 0) + 4;
    const n = len7 === 126 ? (bytes[at + 2] << 8) | bytes[at + 3] : len7;
    if ((bytes[at] & 0x0f) !== 0xa) kept.push(bytes.subarray(at, at + head + n));
    at += head + n;
  }
  return concat(kept);
}

/** Where the frames of `stream` (an upgrade's head, then frames) end. */
function frameEnds(stream: Uint8Array): Set<number> {
  return new Set(framesOf(stream).keys());
}

/**
 * The frames of `stream` (an upgrade's head, then frames): where each frame ends, with the bytes of
 * data frames' payloads up to there (control frames' and headers not counted).
 */
function framesOf(stream: Uint8Array): Map<number, number> {
  const sums = new Map<number, number>();
  let at = new TextDecoder().decode(stream).indexOf("\r\n\r\n") + 4;
  let payloads = 0;
  while (at < stream.byteLength) {
    const len7 = stream[at + 1] & 0x7f;
    const head = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
    const n = len7 === 126
      ? (stream[at + 2] << 8) | stream[at + 3]
      : len7 === 127
      ? new DataView(stream.buffer, stream.byteOffset + at + 6, 4).getUint32(0)
      : len7;
    if ((stream[at] & 0x0f) < 8) payloads += n;
    at += head + n;
    sums.set(at, payloads);
  }
  return sums;
}
