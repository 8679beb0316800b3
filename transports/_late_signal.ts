// Private: an HTTP request's "its client went away" signal without reading `Request.signal` on
// every request. On Deno, reading a served request's signal costs each request an operation that
// waits on its connection; most calls are answered long before a client leaving could matter.
// Here each request gets a plain AbortController, and one sweep (every `everyMs`, running only
// while requests are waiting) links the requests still unanswered to their runtime signal: a call
// that runs longer is stopped when its client leaves, at most one sweep late. A signal read late
// still tells a client that left before (Bun and Deno abort it at once).

/** The runtime's signal of a request, as the sweep reads it. */
interface SignalSource {
  readonly signal: AbortSignal;
}

/** Hands out late-linked signals for the requests of one server (see the file's header). */
export class LateSignals {
  readonly #everyMs: number;
  /** Unanswered requests not linked yet, by their controller. */
  readonly #waiting = new Map<AbortController, SignalSource>();
  /** Linked requests still unanswered: their controller, and the listener to take off on answer. */
  readonly #linked = new Map<AbortController, { source: SignalSource; onAbort: () => void }>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(everyMs: number) {
    this.#everyMs = everyMs;
  }

  /** A signal aborted if `request`'s client goes away before {@linkcode LateSignals.answered}. */
  open(request: SignalSource): AbortController {
    const controller = new AbortController();
    this.#waiting.set(controller, request);
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#sweep(), this.#everyMs);
      (this.#timer as { unref?: () => void }).unref?.();
    }
    return controller;
  }

  /** The request was answered (or failed): its client leaving no longer stops anything. */
  answered(controller: AbortController): void {
    if (this.#waiting.delete(controller)) return;
    const link = this.#linked.get(controller);
    if (link === undefined) return;
    this.#linked.delete(controller);
    link.source.signal.removeEventListener("abort", link.onAbort);
  }

  #sweep(): void {
    if (this.#waiting.size === 0 && this.#linked.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    for (const [controller, source] of this.#waiting) {
      this.#waiting.delete(controller);
      const signal = source.signal;
      if (signal.aborted) {
        controller.abort(signal.reason);
        continue;
      }
      const onAbort = () => {
        this.#linked.delete(controller);
        controller.abort(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#linked.set(controller, { source, onAbort });
    }
  }
}
