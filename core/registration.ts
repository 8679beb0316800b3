/**
 * Names of services and remote-capable ops, process-wide: a node creates services and runs ops by
 * name. The same class or function registered again (a module imported twice, or through a second
 * copy of this package sharing the registry) just replaces its entry. Two different ones under one
 * name never replace each other silently: the name becomes ambiguous, and finding it by name (a
 * node creating the service or running the op, a handle arriving) throws an error naming both and
 * where each was declared. Declaring them is not an error in itself: separate programs that each
 * name a service `Retriever` may well be loaded into one process (a test runner does so).
 *
 * @module
 */

/** Where something is declared: the first stack frame outside the files that register it. */
function declarationSite(): string | undefined {
  const stack = new Error().stack;
  if (stack === undefined) return undefined;
  for (const line of stack.split("\n").slice(1)) {
    const at = line.trim();
    if (at === "" || /[\\/]core[\\/](registration|service_def|service|op)\.ts/.test(at)) continue;
    // "at fn (file:line:col)" or "at file:line:col": the location, its file's name without its
    // directories (the message may travel to a driver: paths stay on the node)
    const m = /\(([^()]*)\)$/.exec(at);
    return (m !== null ? m[1] : at.replace(/^at\s+/, "")).replace(/^.*[\\/]/, "");
  }
  return undefined;
}

interface Entry {
  /** The class or function registered. */
  readonly thing: unknown;
  readonly site: string | undefined;
}

/**
 * A registry of services or ops by name, whose `get` throws for a name two different classes (or
 * functions) were registered under.
 *
 * @example
 * ```ts
 * import { NameRegistry } from "./registration.ts";
 * import { throws } from "node:assert/strict";
 * const registry = new NameRegistry<string>("service");
 * class A {}
 * registry.register("A", "first", A);
 * registry.register("A", "again", A); // the same class again: it replaces its entry
 * if (registry.get("A") !== "again") throw new Error("unexpected");
 * registry.register("A", "other", class A {});
 * throws(() => registry.get("A"), /ambiguous/);
 * ```
 */
export class NameRegistry<V> extends Map<string, V> {
  readonly #kind: "service" | "op";
  readonly #entries = new Map<string, Entry>();
  readonly #clashes = new Map<string, string>();

  /** @param kind What it holds, for error messages. */
  constructor(kind: "service" | "op") {
    super();
    this.#kind = kind;
  }

  /**
   * Registers `value` for `thing` (a class or function) under `name`.
   *
   * @param name The name.
   * @param value What `get(name)` returns.
   * @param thing The class or function it stands for: the same one again replaces the entry.
   */
  register(name: string, value: V, thing: unknown): void {
    const site = declarationSite();
    const had = this.#entries.get(name);
    if (had === undefined || had.thing === thing) {
      if (had === undefined) this.#entries.set(name, { thing, site });
      super.set(name, value);
      return;
    }
    if (this.#clashes.has(name)) return;
    const what = this.#kind === "service" ? "class" : "function";
    const label = (x: unknown, at: string | undefined) =>
      `${what} ${(x as { name?: string }).name || "(anonymous)"}${at === undefined ? "" : ` (at ${at})`}`;
    this.#clashes.set(
      name,
      `The ${this.#kind} name "${name}" is ambiguous in this process: it was registered to ${
        label(had.thing, had.site)
      } and to another ${label(thing, site)}. A node finds ${this.#kind}s by name: give one of them another ` +
        "{ name }",
    );
  }

  /**
   * What `name` stands for.
   *
   * @throws {TypeError} When two different classes or functions were registered under `name`.
   */
  override get(name: string): V | undefined {
    const clash = this.#clashes.get(name);
    if (clash !== undefined) throw new TypeError(clash);
    return super.get(name);
  }
}

/**
 * Registers `value` for `thing` under `name` in `registry`: a {@linkcode NameRegistry}, or the plain
 * map an older copy of this package may have shared first (which keeps its old last-one-wins way).
 *
 * @param registry The registry.
 * @param name The name.
 * @param value What it stands for.
 * @param thing The class or function registered.
 *
 * @example
 * ```ts
 * import { NameRegistry, register } from "./registration.ts";
 * const registry = new NameRegistry<number>("op");
 * const f = () => 1;
 * register(registry, "f", 1, f);
 * if (registry.get("f") !== 1) throw new Error("unexpected");
 * ```
 */
export function register<V>(registry: Map<string, V>, name: string, value: V, thing: unknown): void {
  const r = registry as Map<string, V> & { register?: (name: string, value: V, thing: unknown) => void };
  if (typeof r.register === "function") r.register(name, value, thing);
  else registry.set(name, value);
}
