/**
 * The one seam between `core/` and the runtime it runs on. Everything here is provided by Bun,
 * Deno, Node and edge runtimes alike, but reached differently: AsyncLocalStorage comes from
 * `node:async_hooks` (the only static `node:` import in `core/`; `node:v8` and `node:vm` are
 * imported here on demand where the runtime is V8 with a process, for {@linkcode collectNow}),
 * letting a timer not hold the process open is `unref()` on Bun and Node and `Deno.unrefTimer` on
 * Deno, and the working directory (for relative config paths) and files (a config file, read
 * afresh each time) exist only where there is a process.
 * Every other file in `core/` uses Web-standard APIs only; `tools/check_imports.ts` enforces that.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

export { AsyncLocalStorage };

/** A timer id as `setTimeout`/`setInterval` return it on any runtime. */
export type TimerId = ReturnType<typeof setTimeout> | ReturnType<typeof setInterval>;

/**
 * Lets a timer not hold the process open (Bun and Node: `unref()`; Deno: `Deno.unrefTimer`).
 *
 * @param t The timer.
 *
 * @example
 * ```ts
 * import { unrefTimer } from "./_runtime.ts";
 * const t = setTimeout(() => {}, 60_000);
 * unrefTimer(t); // the program may exit before it fires
 * clearTimeout(t);
 * ```
 */
export function unrefTimer(t: TimerId): void {
  if (typeof t === "object" && t !== null && typeof (t as { unref?: unknown }).unref === "function") {
    (t as unknown as { unref(): void }).unref();
  } else {
    (globalThis as { Deno?: { unrefTimer?(id: number): void } }).Deno?.unrefTimer?.(t as unknown as number);
  }
}

/**
 * Lets a timer hold the process open again after {@linkcode unrefTimer} (Bun and Node: `ref()`;
 * Deno: `Deno.refTimer`).
 *
 * @param t The timer.
 *
 * @example
 * ```ts
 * import { refTimer, unrefTimer } from "./_runtime.ts";
 * const t = setTimeout(() => {}, 60_000);
 * unrefTimer(t);
 * refTimer(t); // the program waits for it again
 * clearTimeout(t);
 * ```
 */
export function refTimer(t: TimerId): void {
  if (typeof t === "object" && t !== null && typeof (t as { ref?: unknown }).ref === "function") {
    (t as unknown as { ref(): void }).ref();
  } else {
    (globalThis as { Deno?: { refTimer?(id: number): void } }).Deno?.refTimer?.(t as unknown as number);
  }
}

/** `setImmediate` where the runtime has it, else a `setTimeout` of 0. */
const immediate: (f: () => void) => void = typeof (globalThis as { setImmediate?: unknown }).setImmediate === "function"
  ? (globalThis as unknown as { setImmediate: (f: () => void) => void }).setImmediate
  : (f) => void setTimeout(f, 0);

/** The part of a Deno TCP connection the I/O turn uses. */
interface DenoConnLike {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
  setNoDelay?(on?: boolean): void;
  readonly localAddr: { port?: number };
  readonly remoteAddr: { port?: number };
}

/** The part of `Deno` the I/O turn uses. */
interface DenoNetLike {
  listen(options: { hostname: string; port: number }): {
    readonly addr: { port?: number };
    accept(): Promise<DenoConnLike>;
    close(): void;
  };
  connect(options: { hostname: string; port: number }): Promise<DenoConnLike>;
  permissions?: { querySync?(descriptor: { name: "net"; host: string }): { state: string } };
}

/**
 * Deno's sockets where the program may use them without asking (its `net` permission for
 * 127.0.0.1 granted: never a prompt), else `undefined`.
 */
function denoNet(): DenoNetLike | undefined {
  const deno = (globalThis as { Deno?: Partial<DenoNetLike> }).Deno;
  if (typeof deno?.listen !== "function" || typeof deno.connect !== "function") return undefined;
  try {
    if (deno.permissions?.querySync?.({ name: "net", host: "127.0.0.1" }).state !== "granted") return undefined;
  } catch {
    return undefined;
  }
  return deno as DenoNetLike;
}

/**
 * The next turn on Deno, after the I/O that is ready: a byte written to a loopback connection of
 * the process's own, and the callbacks run when it is read back.
 *
 * Deno runs `setImmediate`'s callbacks turn after turn before it reads what its sockets hold: while
 * callbacks keep coming (a stream's producer that yields after each chunk, a node serving a flood
 * in slices), what clients sent waits for dozens of turns (BENCHMARKS.md, Streaming, twenty-first
 * session). A read that has to wait for its socket is what makes Deno look at its sockets, all of
 * them at once; so each turn here costs two small socket operations, and every client's data is
 * read before the callbacks run. Where the connection cannot be made (no permission for
 * 127.0.0.1, no sockets), or once it fails, the callbacks go to `setImmediate`.
 */
class DenoIoTurn {
  #writer: DenoConnLike | undefined;
  #reader: DenoConnLike | undefined;
  #off = false;
  #reading = false;
  /** Callbacks waiting for the byte on its way (one byte for all that come before it is read). */
  #waiting: (() => void)[] = [];
  readonly #one = new Uint8Array(1);
  readonly #buffer = new Uint8Array(64);
  /** Settles once the connection is up, or failed. */
  readonly started: Promise<void>;

  constructor(net: DenoNetLike) {
    this.started = this.#start(net).catch(() => this.#stop());
  }

  /** Runs `f` after the next read of the connection (or in `setImmediate` until it is up, or once it failed). */
  run(f: () => void): void {
    const writer = this.#writer;
    if (writer === undefined || this.#off) return immediate(f);
    if (this.#waiting.push(f) > 1) return; // a byte is on its way: f runs when it is read
    writer.write(this.#one).catch(() => this.#stop());
    if (!this.#reading) void this.#read();
  }

  async #start(net: DenoNetLike): Promise<void> {
    const listener = net.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const accepting = listener.accept();
      // (if the connect fails, the listener closes with the accept pending: not an unhandled rejection)
      accepting.catch(() => undefined);
      const writer = await net.connect({ hostname: "127.0.0.1", port: listener.addr.port! });
      let reader = await accepting;
      // another process on the machine may have connected first: only this process's own is kept
      for (let tries = 0; reader.remoteAddr.port !== writer.localAddr.port; tries++) {
        reader.close();
        if (tries === 8) {
          writer.close();
          throw new Error("the I/O turn's connection was not accepted");
        }
        reader = await listener.accept();
      }
      writer.setNoDelay?.(true);
      this.#writer = writer;
      this.#reader = reader;
    } finally {
      listener.close();
    }
  }

  /** Reads while callbacks wait (a read in flight holds the process open, as `setImmediate` does). */
  async #read(): Promise<void> {
    this.#reading = true;
    try {
      // (#stop empties #waiting, and nothing joins it once off)
      while (this.#waiting.length > 0) {
        if (await this.#reader!.read(this.#buffer) === null) return this.#stop();
        const due = this.#waiting;
        this.#waiting = [];
        for (const f of due) runReporting(f);
      }
    } catch {
      this.#stop();
    } finally {
      this.#reading = false;
    }
  }

  /** The connection failed: what waits, and everything after, goes to `setImmediate`. */
  #stop(): void {
    if (this.#off) return;
    this.#off = true;
    try {
      this.#writer?.close();
      this.#reader?.close();
    } catch {
      // closed already
    }
    const due = this.#waiting;
    this.#waiting = [];
    for (const f of due) immediate(f);
  }
}

/** Runs `f`; what it throws is reported as an uncaught error (as from `setImmediate`), and the rest run. */
function runReporting(f: () => void): void {
  try {
    f();
  } catch (e) {
    queueMicrotask(() => {
      throw e;
    });
  }
}

/** Deno's I/O turn, made on first use where Deno's sockets may be used (see {@linkcode denoNet}). */
let denoIoTurn: DenoIoTurn | undefined;
let denoIoTurnTried = false;

/**
 * Runs `f` in the next turn of the event loop, after the I/O that is ready by then: `setImmediate`
 * on Bun and Node; on Deno a turn that reads the sockets first (see `DenoIoTurn` above: Deno's
 * `setImmediate` runs its callbacks before reading them), `setImmediate` where that cannot be had;
 * else a `setTimeout` of 0. Callers yield with it so that a long piece of work lets the clients'
 * messages in between its parts.
 *
 * @param f What to run.
 *
 * @example
 * ```ts
 * import { nextTurn } from "./_runtime.ts";
 * const order: string[] = [];
 * await new Promise<void>((done) => {
 *   nextTurn(() => (order.push("next turn"), done()));
 *   queueMicrotask(() => order.push("microtask"));
 * });
 * if (order.join() !== "microtask,next turn") throw new Error(order.join());
 * ```
 */
export function nextTurn(f: () => void): void {
  const turn = denoTurn();
  if (turn !== undefined) return turn.run(f);
  immediate(f);
}

/** Deno's I/O turn, started on the first call where it can be had; `undefined` elsewhere. */
function denoTurn(): DenoIoTurn | undefined {
  if (!denoIoTurnTried) {
    denoIoTurnTried = true;
    const net = denoNet();
    if (net !== undefined) denoIoTurn = new DenoIoTurn(net);
  }
  return denoIoTurn;
}

/**
 * Settles once {@linkcode nextTurn}'s way of turning is set up (on Deno its connection takes a few
 * turns to make, and the turns before go to `setImmediate`); at once elsewhere.
 *
 * @returns A promise that resolves when it is.
 *
 * @example
 * ```ts
 * import { nextTurn, turnsReady } from "./_runtime.ts";
 * await turnsReady();
 * await new Promise<void>((r) => nextTurn(r));
 * ```
 */
export function turnsReady(): Promise<void> {
  return denoTurn()?.started ?? Promise.resolve();
}

/**
 * The working directory as a `file:` URL ending in `/`, or `undefined` on a runtime without one
 * (an edge worker), where paths must be absolute or URLs.
 *
 * @returns The directory URL, or `undefined`.
 *
 * @example
 * ```ts
 * import { workingDirectoryUrl } from "./_runtime.ts";
 * const dir = workingDirectoryUrl();
 * if (dir !== undefined && !dir.endsWith("/")) throw new Error("expected a directory URL");
 * ```
 */
export function workingDirectoryUrl(): string | undefined {
  const g = globalThis as { process?: { cwd?: () => string }; Deno?: { cwd?: () => string } };
  const dir = g.process?.cwd?.() ?? g.Deno?.cwd?.();
  if (dir === undefined) return undefined;
  return `file://${dir.endsWith("/") ? dir : `${dir}/`}`;
}

/**
 * The text of a local file, read from disk now (never a cached copy: a module import of it would
 * be cached for the life of the process). Through `node:fs/promises` as the runtime provides it
 * (`process.getBuiltinModule`: Bun, Node, Deno), or `Deno.readTextFile`.
 *
 * @param url A `file:` URL.
 * @returns The file's text.
 * @throws {TypeError} Where the runtime has no file system (an edge worker); else what reading
 * failed with (no such file, no permission).
 *
 * @example
 * ```ts
 * import { readTextFile } from "./_runtime.ts";
 * const text = await readTextFile(new URL("./_runtime.ts", import.meta.url));
 * if (!text.includes("export async function readTextFile")) throw new Error("unexpected");
 * ```
 */
export async function readTextFile(url: URL): Promise<string> {
  const g = globalThis as {
    process?: { getBuiltinModule?: (id: string) => unknown };
    Deno?: { readTextFile?: (path: URL) => Promise<string> };
  };
  const fs = g.process?.getBuiltinModule?.("node:fs/promises") as
    | { readFile?: (path: URL, encoding: "utf8") => Promise<string> }
    | undefined;
  if (typeof fs?.readFile === "function") return await fs.readFile(url, "utf8");
  if (typeof g.Deno?.readTextFile === "function") return await g.Deno.readTextFile(url);
  throw new TypeError("this runtime has no file system to read from");
}

/**
 * An environment variable, where the runtime has an environment and the program may read it
 * (`process.env` on Bun, Node and Deno; `Deno.env` as a fallback); `undefined` otherwise (an edge
 * runtime, or no permission).
 *
 * @param name The variable's name.
 * @returns Its value, or `undefined`.
 *
 * @example
 * ```ts
 * import { envVar } from "./_runtime.ts";
 * if (envVar("THINKAGAIN_SURELY_UNSET_VARIABLE") !== undefined) throw new Error("unexpected");
 * ```
 */
export function envVar(name: string): string | undefined {
  try {
    const g = globalThis as {
      process?: { env?: Record<string, string | undefined> };
      Deno?: { env?: { get(k: string): string | undefined } };
    };
    return g.process?.env?.[name] ?? g.Deno?.env?.get(name);
  } catch {
    return undefined; // no permission to read the environment
  }
}

/**
 * The runtime and its version, for messages about what it lacks: `Node 20.20.2`, `Bun 1.4.5`,
 * `Deno 2.9.6`, another's `navigator.userAgent` (a browser's), or `an unknown runtime`.
 *
 * @returns Its name.
 *
 * @example
 * ```ts
 * import { runtimeName } from "./_runtime.ts";
 * if (!/^(Bun|Deno|Node) \d/.test(runtimeName())) throw new Error(`unexpected: ${runtimeName()}`);
 * ```
 */
export function runtimeName(): string {
  const g = globalThis as {
    Bun?: { version?: unknown };
    Deno?: { version?: { deno?: unknown } };
    process?: { versions?: { node?: unknown } };
    navigator?: { userAgent?: unknown };
  };
  // (Bun and Deno name a Node version too: they are asked first)
  if (typeof g.Bun?.version === "string") return `Bun ${g.Bun.version}`;
  if (typeof g.Deno?.version?.deno === "string") return `Deno ${g.Deno.version.deno}`;
  if (typeof g.process?.versions?.node === "string") return `Node ${g.process.versions.node}`;
  return typeof g.navigator?.userAgent === "string" ? g.navigator.userAgent : "an unknown runtime";
}

/** Whether the runtime is Bun (JavaScriptCore). */
const onBun: boolean = (globalThis as { Bun?: unknown }).Bun !== undefined;

/**
 * Whether a new small typed array costs less than a view of another's bytes (`subarray`): on Bun
 * (JavaScriptCore) a 16-byte array filled in a loop costs less than a view; on V8 (Deno, Node) a
 * new typed array costs many times a view (BENCHMARKS.md, Streaming, tenth session). A decoder may
 * copy small byte strings where this holds (`transports/stream_chunk.ts`).
 *
 * @example
 * ```ts
 * import { smallCopiesAreCheap } from "./_runtime.ts";
 * if (typeof smallCopiesAreCheap !== "boolean") throw new Error("unexpected");
 * ```
 */
export const smallCopiesAreCheap: boolean = onBun;

/** Bun's collector (`Bun.gc`), where the runtime is Bun. */
const bunGc: ((force: boolean) => void) | undefined = (() => {
  const gc = (globalThis as { Bun?: { gc?: unknown } }).Bun?.gc;
  return typeof gc === "function" ? (force: boolean) => (gc as (force: boolean) => void)(force) : undefined;
})();

/**
 * Bytes of the untouched buffer {@linkcode requestCollection} makes on V8: enough to cross the
 * external-memory level past which V8 marks the whole heap (a buffer of 256 MiB did not, here).
 */
const COLLECTION_PROMPT_BYTES = 1024 * 1024 * 1024;

/**
 * Asks the runtime to collect garbage soon, without `--expose-gc`, so that `FinalizationRegistry`
 * callbacks come for objects dropped since the last collection even when the program allocates
 * little. `thorough` asks for the whole heap: a young-generation collection misses an object that
 * was alive at an earlier one (it is old now), and whatever old garbage points to.
 *
 * - Bun: `Bun.gc(thorough)`: without it a collection on JavaScriptCore's own schedule (quick);
 *   with it a full collection now (far dearer: the whole heap of a driver with this package loaded;
 *   BENCHMARKS.md, Data plane, eleventh session).
 * - V8 (Deno, Node), which offers no such call without a flag, always the whole heap: one
 *   `ArrayBuffer` of 1 GiB made and dropped at once. V8 counts it as external memory, and past its
 *   external-memory limit it starts marking the whole heap incrementally (a young collection alone
 *   freed none of a driver's dropped refs); the collection ends on V8's own tasks some ms later
 *   (longer for a larger heap), and the callbacks run after it. The buffer's pages are never
 *   touched, so none is made resident: it costs an `mmap` and an `munmap` of address space (and
 *   V8's first marking step). Where the system refuses even that (no overcommit), V8 collects fully
 *   before refusing it, and the `RangeError` is caught here.
 *
 * Callers do it rarely (after MiBs of work, never per call).
 *
 * @param thorough Whether the whole heap should be collected (V8: always).
 *
 * @example
 * ```ts
 * import { requestCollection } from "./_runtime.ts";
 * let collected = false;
 * const registry = new FinalizationRegistry(() => (collected = true));
 * (() => registry.register({}, 0))(); // dropped at once
 * for (let i = 0; i < 100 && !collected; i++) {
 *   requestCollection(true);
 *   await new Promise((r) => setTimeout(r, 0)); // the callbacks come in a later turn
 * }
 * if (!collected) throw new Error("nothing was collected");
 * ```
 */
export function requestCollection(thorough: boolean): void {
  if (bunGc !== undefined) {
    bunGc(thorough);
    return;
  }
  if (v8FullCollection === undefined) loadV8FullCollection();
  try {
    new ArrayBuffer(COLLECTION_PROMPT_BYTES);
  } catch {
    // refused (no overcommit, or a capped address space): V8 collected fully before refusing it
  }
}

/** V8's own full collection (`gc()`), once {@linkcode loadV8FullCollection} has it; `null`: none to have. */
let v8FullCollection: (() => void) | null | undefined;

/**
 * Gets V8's `gc()` without a command-line flag, where the runtime has `node:v8` and `node:vm` (Deno,
 * Node): `--expose-gc` set at run time, then `gc` read from a new context (the program's own global
 * gains nothing). Asynchronous (the modules are imported when first needed, so that an edge runtime
 * without them never loads them), so the first {@linkcode collectNow} on V8 may still find none.
 */
function loadV8FullCollection(): void {
  const direct = (globalThis as { gc?: unknown }).gc; // a process started with --expose-gc
  if (typeof direct === "function") {
    v8FullCollection = () => (direct as () => void)();
    return;
  }
  v8FullCollection = null;
  const versions = (globalThis as { process?: { versions?: { v8?: string } } }).process?.versions;
  if (typeof versions?.v8 !== "string") return; // not V8 (or no process): nothing to import
  Promise.all([import("node:v8"), import("node:vm")]).then(([v8m, vmm]) => {
    v8m.setFlagsFromString("--expose-gc");
    const gc: unknown = vmm.runInNewContext("gc");
    if (typeof gc === "function") v8FullCollection = () => (gc as () => void)();
  }).catch(() => {
    // not offered here: requestCollection's prompt is all there is
  });
}

/**
 * Collects the whole heap now, synchronously, where the runtime allows it: `Bun.gc(true)` on Bun,
 * V8's own `gc()` on Deno and Node (had as {@linkcode loadV8FullCollection} says; the first call
 * there may not have it yet). Where it cannot, it prompts as `requestCollection(true)` does.
 * `FinalizationRegistry` callbacks for what it found come in a later turn. It stops the program for
 * the length of a full collection (milliseconds for a heap of tens of MiB): for when a prompt's
 * collection came too late (a node's store filling with results of dropped refs), never per call.
 *
 * @returns Whether the heap was collected (`false`: only prompted).
 *
 * @example
 * ```ts
 * import { collectNow } from "./_runtime.ts";
 * let collected = false;
 * const registry = new FinalizationRegistry(() => (collected = true));
 * (() => registry.register({}, 0))(); // dropped at once
 * for (let i = 0; i < 100 && !collected; i++) {
 *   collectNow();
 *   await new Promise((r) => setTimeout(r, 0)); // the callbacks come in a later turn
 * }
 * if (!collected) throw new Error("nothing was collected");
 * ```
 */
export function collectNow(): boolean {
  if (bunGc !== undefined) {
    bunGc(true);
    return true;
  }
  if (v8FullCollection === undefined) loadV8FullCollection();
  if (typeof v8FullCollection === "function") {
    v8FullCollection();
    return true;
  }
  requestCollection(true);
  return false;
}

/** `bun:jsc`'s `fullGC`, looked up on first use (Bun only; `null`: not there). */
let bunFullGc: (() => unknown) | null | undefined;

/**
 * Whether {@linkcode collectFreedMemory} collects on this runtime: on Bun. On V8 (Deno, Node) it does
 * nothing: there it could only be a whole-heap marking ({@linkcode requestCollection}), and a node
 * marking after each `free` made Deno's 16 MiB hand-off in `bench/data_plane.ts` markedly slower
 * against the raw WebSocket (BENCHMARKS.md, Data plane, twelfth session) with no gain this machine
 * resolved at 1 MiB.
 *
 * @example
 * ```ts
 * import { collectsFreedMemory } from "./_runtime.ts";
 * if (typeof collectsFreedMemory !== "boolean") throw new Error("unexpected");
 * ```
 */
export const collectsFreedMemory: boolean = onBun;

/**
 * Collects the whole heap now and keeps the memory it frees for this process's next allocations
 * (Bun; elsewhere nothing, see {@linkcode collectsFreedMemory}). A node calls it once a driver's
 * garbage collector freed objects of its store: they had lived long enough to be old in the node's
 * own heap, where only a whole-heap collection finds them, and until then each new result lands on
 * fresh pages (in `bench/data_plane.ts` on Bun, far more page faults per 1 MiB result than when they
 * are freed at once). `fullGC()` of `bun:jsc` (a whole-heap collection); not
 * `Bun.gc(true)`, which also hands the freed memory back to the system, so the next results fault
 * on every page again.
 *
 * Callers do it rarely (after MiBs of freed objects, at most once per some ms).
 *
 * @example
 * ```ts
 * import { collectFreedMemory, collectsFreedMemory } from "./_runtime.ts";
 * let collected = false;
 * const registry = new FinalizationRegistry(() => (collected = true));
 * (() => registry.register({}, 0))();
 * for (let i = 0; i < 100 && collectsFreedMemory && !collected; i++) {
 *   collectFreedMemory();
 *   await new Promise((r) => setTimeout(r, 0));
 * }
 * if (collectsFreedMemory && !collected) throw new Error("nothing was collected");
 * ```
 */
export function collectFreedMemory(): void {
  if (!collectsFreedMemory) return;
  if (bunFullGc === undefined) {
    try {
      const jsc = (import.meta as { require?(id: string): { fullGC?: () => unknown } }).require?.("bun:jsc");
      bunFullGc = typeof jsc?.fullGC === "function" ? jsc.fullGC : null;
    } catch {
      bunFullGc = null;
    }
  }
  if (bunFullGc !== null) bunFullGc();
  else requestCollection(true);
}
