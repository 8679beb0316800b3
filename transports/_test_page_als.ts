// Private: the AsyncLocalStorage a browser page's bundle gets for `node:async_hooks`
// (_test_page_build.ts): a browser has none, and the driver needs one (README, Deno, Bun and Node).
// Synchronous only: a store set by run() is not seen after an await, which the page's calls do not need.
export class AsyncLocalStorage<T> {
  #store: T | undefined;
  getStore(): T | undefined {
    return this.#store;
  }
  run<R>(store: T, fn: (...args: unknown[]) => R, ...args: unknown[]): R {
    const before = this.#store;
    this.#store = store;
    try {
      return fn(...args);
    } finally {
      this.#store = before;
    }
  }
  enterWith(store: T): void {
    this.#store = store;
  }
  exit<R>(fn: (...args: unknown[]) => R, ...args: unknown[]): R {
    return this.run(undefined as T, fn, ...args);
  }
}
