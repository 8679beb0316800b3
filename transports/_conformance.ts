// The one conformance suite every transport passes (private; called from each *_test.ts).
import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert/strict";
import { describe, test } from "node:test";
import { decode, encode } from "../core/codec.ts";
import { AuthError, ProtocolError, TimeoutError, TransportError } from "../core/errors.ts";
import type { FrameHandler, ServeFramesOptions, Transport, TransportConnection } from "./transport.ts";
import { gate } from "../core/_test_utils.ts";

/** A running server under test. */
export interface TestServer {
  readonly endpoint: string;
  close(): Promise<void>;
}

/** What a transport's test file provides to the suite. */
export interface ConformanceTarget {
  transport: Transport;
  /** Starts a server; `at` restarts on the endpoint a previous server had (same port / name). */
  start(handler: FrameHandler, options?: ServeFramesOptions & { at?: string }): Promise<TestServer>;
  /** Whether handler invocations follow request order on one connection. */
  ordered: boolean;
  /** An endpoint where nothing listens. */
  unreachable: string;
  /** Sends malformed bytes below the transport (raw socket / raw body) and checks the reaction. */
  sendRawGarbage?(server: TestServer): Promise<void>;
}

const u32 = (n: number): Uint8Array => new Uint8Array(new Uint32Array([n]).buffer);
const readU32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(0, true);

async function withServer(
  target: ConformanceTarget,
  handler: FrameHandler,
  options: ServeFramesOptions,
  body: (server: TestServer, conn: TransportConnection) => Promise<void>,
  connectToken: string | undefined = options.token,
): Promise<void> {
  const server = await target.start(handler, options);
  let conn: TransportConnection | undefined;
  try {
    conn = await target.transport.connect(server.endpoint, { token: connectToken });
    await body(server, conn);
  } finally {
    await conn?.close();
    await server.close();
  }
}

/**
 * Registers the conformance tests for one transport.
 */
export function runTransportConformance(name: string, target: ConformanceTarget): void {
  describe(`${name} transport conformance`, () => {
    test(`${name} request resolves with the handler's reply`, async () => {
      await withServer(target, (f) => new Uint8Array([...f].reverse()), {}, async (_s, conn) => {
        deepStrictEqual(await conn.request(new Uint8Array([1, 2, 3])), new Uint8Array([3, 2, 1]));
        deepStrictEqual(await conn.request(new Uint8Array([9])), new Uint8Array([9]));
      });
    });

    test(
      `${name} multiplexes 1,000 concurrent requests and routes each reply to its request`,
      { timeout: 60_000 },
      async () => {
        let maxInFlight = 0;
        let inFlight = 0;
        const handler: FrameHandler = async (f) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          const n = readU32(f);
          await new Promise((r) => setTimeout(r, n % 3)); // replies come back out of order
          inFlight--;
          return u32(n * 2 + 1);
        };
        await withServer(target, handler, {}, async (_s, conn) => {
          const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => conn.request(u32(i))));
          replies.forEach((r, i) => strictEqual(readU32(r), i * 2 + 1));
          ok(maxInFlight > 1, `expected requests to overlap in the handler, max in flight was ${maxInFlight}`);
        });
      },
    );

    test(`${name} starts handlers in request order on one connection`, {
      skip: !target.ordered && "not promised by this transport",
    }, async () => {
      const seen: number[] = [];
      await withServer(
        target,
        (f) => {
          seen.push(readU32(f));
          return f;
        },
        {},
        async (_s, conn) => {
          await Promise.all(Array.from({ length: 300 }, (_, i) => conn.request(u32(i))));
          deepStrictEqual(seen, Array.from({ length: 300 }, (_, i) => i));
        },
      );
    });

    test(`${name} round-trips a 16 MiB Float32Array frame`, { timeout: 60_000 }, async () => {
      const data = new Float32Array(4 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) data[i] = i * 0.5;
      const handler: FrameHandler = (f) => {
        const { x } = decode(f) as { x: Float32Array };
        const y = new Float32Array(x.length);
        for (let i = 0; i < x.length; i++) y[i] = x[i] + 1;
        return encode({ y });
      };
      await withServer(target, handler, {}, async (_s, conn) => {
        const frame = encode({ x: data });
        ok(frame.byteLength >= 16 * 1024 * 1024);
        const { y } = decode(await conn.request(frame)) as { y: Float32Array };
        ok(y instanceof Float32Array);
        strictEqual(y.length, data.length);
        for (let i = 0; i < y.length; i += 997) strictEqual(y[i], data[i] + 1);
        strictEqual(y[y.length - 1], data[data.length - 1] + 1);
      });
    });

    test(`${name} rejects with the handler's error and stays usable`, async () => {
      const handler: FrameHandler = (f) => {
        if (f[0] === 1) throw new TypeError("bad input");
        if (f[0] === 2) return Promise.reject(new TimeoutError("slowOp", 25));
        if (f[0] === 3) throw "a string";
        return f;
      };
      await withServer(target, handler, {}, async (_s, conn) => {
        await rejects(conn.request(new Uint8Array([1])), (e: unknown) => {
          ok(e instanceof TypeError, `expected TypeError, got ${String(e)}`);
          strictEqual(e.message, "bad input");
          return true;
        });
        await rejects(conn.request(new Uint8Array([2])), (e: unknown) => {
          ok(e instanceof TimeoutError);
          strictEqual(e.timeoutMs, 25);
          return true;
        });
        await rejects(
          conn.request(new Uint8Array([3])),
          (e: unknown) => e instanceof Error && e.message.includes("a string"),
        );
        deepStrictEqual(await conn.request(new Uint8Array([0, 5])), new Uint8Array([0, 5]));
      });
    });

    test(`${name} refuses frames over the limit on the sending and on the receiving side`, async () => {
      let calls = 0;
      await withServer(
        target,
        (f) => {
          calls++;
          return f;
        },
        { maxFrameBytes: 4096 },
        async (server, conn) => {
          // The server's limit (the client's is the default 64 MiB).
          await rejects(conn.request(new Uint8Array(8192)), (e: unknown) => {
            ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
            strictEqual(e.reason, "too-large");
            ok(e.message.includes("8192"), e.message);
            return true;
          });
          strictEqual(calls, 0);
          deepStrictEqual(await conn.request(new Uint8Array([4])), new Uint8Array([4]));
          // The client's own limit: refused before anything is sent.
          const small = await target.transport.connect(server.endpoint, { maxFrameBytes: 16 });
          await rejects(
            small.request(new Uint8Array(17)),
            (e: unknown) => e instanceof TransportError && e.reason === "too-large",
          );
          strictEqual(calls, 1);
          await small.close();
        },
      );
    });

    test(`${name} refuses a reply over the node's own limit, saying it is the node's reply`, async () => {
      await withServer(
        target,
        () => new Uint8Array(8192), // a result larger than the node sends
        { maxFrameBytes: 4096 },
        async (_server, conn) => {
          await rejects(conn.request(new Uint8Array([1])), (e: unknown) => {
            ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
            strictEqual(e.reason, "too-large");
            ok(/reply of 8\d{3} bytes is over its frame limit of 4096 bytes/.test(e.message), e.message);
            return true;
          });
        },
      );
    });

    test(`${name} close rejects pending requests and later ones with TransportError "closed"`, async () => {
      let release: () => void = () => {};
      const gate = new Promise<void>((r) => (release = r));
      await withServer(
        target,
        async (f) => {
          await gate;
          return f;
        },
        {},
        async (_s, conn) => {
          const reasons: TransportError[] = [];
          conn.onClose((r) => reasons.push(r));
          const pending = conn.request(new Uint8Array([1]));
          await new Promise((r) => setTimeout(r, 20));
          const rejected = rejects(pending, (e: unknown) => e instanceof TransportError && e.reason === "closed");
          await conn.close();
          await rejected;
          await rejects(
            conn.request(new Uint8Array([2])),
            (e: unknown) => e instanceof TransportError && e.reason === "closed",
          );
          strictEqual(conn.closed, true);
          ok(reasons.length >= 1 && reasons[0].reason === "closed");
          release();
        },
      );
    });

    test(`${name} aborting a request rejects it with the signal's reason`, async () => {
      const seen: number[] = [];
      await withServer(
        target,
        (f) => {
          seen.push(f[0]);
          return new Promise<Uint8Array>((r) => setTimeout(() => r(f), 200));
        },
        {},
        async (_s, conn) => {
          const ac = new AbortController();
          const p = conn.request(new Uint8Array([1]), { signal: ac.signal });
          ac.abort(new Error("caller gave up"));
          await rejects(p, /caller gave up/);
          // a signal that has already fired: the request is not sent at all
          await rejects(
            conn.request(new Uint8Array([2]), { signal: AbortSignal.abort(new Error("too late")) }),
            /too late/,
          );
          await rejects(
            conn.request(new Uint8Array([1]), { timeoutMs: 10 }),
            (e: unknown) => e instanceof TransportError,
          );
          deepStrictEqual(await conn.request(new Uint8Array([1])), new Uint8Array([1]));
          ok(!seen.includes(2), "an already aborted request never reaches the handler");
        },
      );
    });

    test(`${name} a request with a timeoutMs of Infinity or of 2^31 ms or more waits for the reply`, async () => {
      let arrived = gate(), release = gate();
      await withServer(
        target,
        async (f, peer) => {
          arrived.open();
          await release.promise;
          // the caller's deadline, where the transport tells the node, has not passed either
          return peer.signal?.aborted ? new Uint8Array([0]) : f;
        },
        {},
        async (_s, conn) => {
          for (const timeoutMs of [Infinity, 2 ** 31, 1e10]) {
            arrived = gate();
            release = gate();
            let settled = false;
            const reply = conn.request(new Uint8Array([7]), { timeoutMs });
            const outcome = reply.then(() => (settled = true), () => (settled = true));
            try {
              await Promise.race([arrived.promise, outcome]);
              // setTimeout takes 2^31 ms or more for 1 ms: such a timer has fired by now
              for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 1));
              strictEqual(settled, false, `timeoutMs ${timeoutMs}: the request ended before its reply`);
            } finally {
              release.open(); // the handler never holds the server's close
            }
            deepStrictEqual(await reply, new Uint8Array([7]), `timeoutMs ${timeoutMs}`);
          }
        },
      );
    });

    test(`${name} connection works again after the server restarts at the same endpoint`, async () => {
      let server = await target.start((f) => f, {});
      const conn = await target.transport.connect(server.endpoint);
      try {
        deepStrictEqual(await conn.request(new Uint8Array([1])), new Uint8Array([1]));
        await server.close();
        await rejects(conn.request(new Uint8Array([2])), TransportError);
        server = await target.start((f) => new Uint8Array([f[0] + 100]), { at: server.endpoint });
        deepStrictEqual(await conn.request(new Uint8Array([3])), new Uint8Array([103]));
      } finally {
        await conn.close();
        await server.close();
      }
    });

    test(`${name} pending requests reject with TransportError when the server goes away`, async () => {
      const server = await target.start(() => new Promise<Uint8Array>(() => {}), {});
      const conn = await target.transport.connect(server.endpoint);
      try {
        const pending = conn.request(new Uint8Array([1]));
        await new Promise((r) => setTimeout(r, 20));
        const rejected = rejects(pending, TransportError);
        await server.close();
        await rejected;
      } finally {
        await conn.close();
      }
    });

    test(`${name} bad frames get an error reply and the server keeps serving`, async () => {
      const handler: FrameHandler = (f) => encode({ got: decode(f) });
      await withServer(target, handler, {}, async (server, conn) => {
        await rejects(conn.request(new Uint8Array([0xff, 0x13, 0x37])), ProtocolError);
        await rejects(conn.request(encode({ a: 1 }).subarray(0, 3)), ProtocolError);
        await target.sendRawGarbage?.(server);
        deepStrictEqual(decode(await conn.request(encode("still here"))), { got: "still here" });
        const other = await target.transport.connect(server.endpoint);
        deepStrictEqual(decode(await other.request(encode(1))), { got: 1 });
        await other.close();
      });
    });

    test(`${name} refuses a missing or wrong token before the handler runs`, async () => {
      let calls = 0;
      const server = await target.start((f) => {
        calls++;
        return f;
      }, { token: "s3cret-token" });
      try {
        for (const token of [undefined, "wrong-token"]) {
          await rejects(
            (async () => {
              const conn = await target.transport.connect(server.endpoint, { token });
              try {
                await conn.request(new Uint8Array([1]));
              } finally {
                await conn.close();
              }
            })(),
            (e: unknown) => {
              ok(e instanceof AuthError, `expected AuthError, got ${String(e)}`);
              ok(!e.message.includes("s3cret") && !e.message.includes("wrong-token"), e.message);
              return true;
            },
          );
        }
        strictEqual(calls, 0);
        const conn = await target.transport.connect(server.endpoint, { token: "s3cret-token" });
        deepStrictEqual(await conn.request(new Uint8Array([5])), new Uint8Array([5]));
        await conn.close();
        strictEqual(calls, 1);
      } finally {
        await server.close();
      }
    });

    test(`${name} an unreachable endpoint fails with TransportError naming it`, async () => {
      await rejects(
        (async () => {
          const conn = await target.transport.connect(target.unreachable, { connectTimeoutMs: 5000 });
          await conn.request(new Uint8Array([1]));
        })(),
        (e: unknown) => {
          ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
          strictEqual(e.reason, "unreachable");
          ok(e.message.includes(target.unreachable), e.message);
          return true;
        },
      );
    });

    test(`${name} notify delivers a one-way frame`, async () => {
      const got: number[] = [];
      await withServer(
        target,
        (f, peer) => {
          if (peer.oneWay) got.push(f[0]);
          return f;
        },
        {},
        async (_s, conn) => {
          conn.notify(new Uint8Array([42]));
          for (let i = 0; i < 1000 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
          deepStrictEqual(got, [42]);
        },
      );
    });
  });
}
