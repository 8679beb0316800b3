// A browser page on an origin a node allows (createNodeApp's allowOrigins, `thinkagain serve
// --allow-origin`): the node's app under `fetch` as a page does it, with the Fetch standard's CORS
// checks (a preflight before a request with headers beyond the safelisted ones; the answer must name
// the page's origin), and a page's WebSocket, which says nothing of why an upgrade failed. The same
// in chromium: adapters/dashboard/browser_test.ts (the dashboard) and the h9 report's repro.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Hono } from "hono";
import * as ta from "../mod.ts";
import { AuthError } from "../core/errors.ts";
import { createNodeApp } from "./server.ts";
import { NodeServer } from "./node_server.ts";
import { RPC_REQUEST_HEADERS } from "./http.ts";
import { webSocketTransport } from "./websocket.ts";

const ORIGIN = "https://app.example";
const NODE = "http://127.0.0.1:7070";

/** Headers a page sends without asking first (CORS-safelisted), and the content types that keep one so. */
const SAFELISTED = new Set(["accept", "accept-language", "content-language"]);
const SIMPLE_TYPES = new Set(["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]);

/** A node answer a page may read: it names the page's origin. */
function readable(res: Response): boolean {
  const allowed = res.headers.get("access-control-allow-origin");
  return allowed === ORIGIN || allowed === "*";
}

function list(header: string | null): string[] {
  return (header ?? "").split(",").map((h) => h.trim().toLowerCase()).filter((h) => h !== "");
}

/**
 * `fetch` as a page on {@link ORIGIN} does it, to `app`: a request with a method other than GET,
 * HEAD or POST, or with a header that is not safelisted, is preceded by a preflight that must allow
 * that method and every such header; the response must name the page's origin. A failed check is
 * what a browser gives the page (a TypeError, "Failed to fetch", and nothing of the answer); each is
 * also listed in `blocked`, with what was missing.
 */
function pageFetch(app: Hono, blocked: string[]): typeof fetch {
  const page = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    const unsafe = [...req.headers.keys()].filter((h) =>
      !SAFELISTED.has(h) &&
      !(h === "content-type" && SIMPLE_TYPES.has(req.headers.get(h)!.split(";")[0].trim().toLowerCase()))
    ).sort();
    const simpleMethod = ["GET", "HEAD", "POST"].includes(req.method);
    if (unsafe.length > 0 || !simpleMethod) {
      const pre = await app.fetch(
        new Request(req.url, {
          method: "OPTIONS",
          headers: {
            origin: ORIGIN,
            "access-control-request-method": req.method,
            ...(unsafe.length > 0 ? { "access-control-request-headers": unsafe.join(",") } : {}),
          },
        }),
      );
      const methods = list(pre.headers.get("access-control-allow-methods"));
      const headers = list(pre.headers.get("access-control-allow-headers"));
      const missing = unsafe.filter((h) => !headers.includes(h));
      if (
        !pre.ok || !readable(pre) || (!simpleMethod && !methods.includes(req.method.toLowerCase())) || missing.length
      ) {
        blocked.push(`preflight of ${req.method} ${new URL(req.url).pathname}: ${pre.status}, not allowed: ${missing}`);
        throw new TypeError("Failed to fetch");
      }
    }
    const headers = new Headers(req.headers);
    headers.set("origin", ORIGIN);
    const res = await app.fetch(new Request(req, { headers }));
    if (!readable(res)) {
      await res.body?.cancel();
      blocked.push(`${req.method} ${new URL(req.url).pathname}: ${res.status} without the page's origin`);
      throw new TypeError("Failed to fetch");
    }
    return res;
  };
  return page as typeof fetch;
}

/** Runs `body` with `globalThis.fetch` (and, if given, `WebSocket`) replaced, as a page has them. */
async function asPage(
  app: Hono,
  body: (blocked: string[]) => Promise<void>,
  webSocket?: typeof WebSocket,
): Promise<void> {
  const savedFetch = globalThis.fetch;
  const savedWebSocket = globalThis.WebSocket;
  const blocked: string[] = [];
  globalThis.fetch = pageFetch(app, blocked);
  if (webSocket !== undefined) globalThis.WebSocket = webSocket;
  try {
    await body(blocked);
  } finally {
    globalThis.fetch = savedFetch;
    globalThis.WebSocket = savedWebSocket;
  }
}

/**
 * A page's WebSocket whose upgrade the node did not accept: the browser fires `error`, then `close`
 * (1006), and tells the page nothing more (not the status).
 */
class RefusedWebSocket {
  binaryType = "blob";
  readyState = 0;
  onopen: ((e: Event) => void) | null = null;
  onerror: ((e: Event) => void) | null = null;
  onclose: ((e: Event) => void) | null = null;
  onmessage: ((e: Event) => void) | null = null;
  constructor(readonly url: string, readonly protocols?: string | string[]) {
    queueMicrotask(() => {
      this.readyState = 3;
      this.onerror?.(new Event("error"));
      this.onclose?.(Object.assign(new Event("close"), { code: 1006, reason: "", wasClean: false }));
    });
  }
  send(): void {}
  close(): void {}
}

test("createNodeApp's CORS preflight for POST /rpc from an allowed page allows every header the HTTP transport sends", async () => {
  const app = createNodeApp((f) => f, { token: "t", allowOrigins: [ORIGIN] });
  const res = await app.fetch(
    new Request(`${NODE}/rpc`, {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": RPC_REQUEST_HEADERS.join(","),
      },
    }),
  );
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("access-control-allow-origin"), ORIGIN);
  const allowed = list(res.headers.get("access-control-allow-headers"));
  for (const h of RPC_REQUEST_HEADERS) assert.ok(allowed.includes(h), `the preflight does not allow ${h}: ${allowed}`);
});

test("a page on an allowed origin calls a service on a node over http:// (its browser lets every request through)", async () => {
  const token = "t0ken";
  const Greeter = ta.service(
    class CorsPageGreeter {
      greet(who: string) {
        return `hello ${who}`;
      }
    },
  );
  const node = new NodeServer({ name: "n1", token });
  const app = createNodeApp(node.handler, { token, allowOrigins: [ORIGIN] });
  try {
    await asPage(app, async (blocked) => {
      const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: NODE })], { token });
      try {
        assert.equal(await mesh.run(() => Greeter.init().greet.go("page")), "hello page");
      } finally {
        await mesh.close();
      }
      assert.deepEqual(blocked, []);
    });
  } finally {
    await node.drain();
  }
});

test("a page whose WebSocket upgrade is refused for a wrong token gets AuthError: GET /ws answers an allowed page's probe readably", async () => {
  const app = createNodeApp((f) => f, { token: "right", allowOrigins: [ORIGIN] });
  await asPage(app, async (blocked) => {
    await assert.rejects(
      webSocketTransport.connect("ws://127.0.0.1:7070", { token: "wrong" }),
      (e) => e instanceof AuthError && /refused: wrong token/.test(e.message),
    );
    await assert.rejects(
      webSocketTransport.connect("ws://127.0.0.1:7070"),
      (e) => e instanceof AuthError && /requires a token and none was given/.test(e.message),
    );
    assert.deepEqual(blocked, []);
  }, RefusedWebSocket as unknown as typeof WebSocket);
});

test("createNodeApp answers a page's GET /ws preflight and its 401 with CORS only for an allowed origin", async () => {
  const app = createNodeApp((f) => f, { token: "t", allowOrigins: [ORIGIN] });
  const pre = await app.fetch(
    new Request(`${NODE}/ws`, {
      method: "OPTIONS",
      headers: {
        origin: ORIGIN,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    }),
  );
  assert.equal(pre.headers.get("access-control-allow-origin"), ORIGIN);
  assert.ok(list(pre.headers.get("access-control-allow-headers")).includes("authorization"));
  const refused = await app.fetch(
    new Request(`${NODE}/ws`, { headers: { origin: ORIGIN, authorization: "Bearer wrong" } }),
  );
  assert.equal(refused.status, 401);
  assert.equal(refused.headers.get("access-control-allow-origin"), ORIGIN);
  // another page is still refused before anything else, and told nothing it may read
  const other = await app.fetch(new Request(`${NODE}/ws`, { headers: { origin: "https://evil.example" } }));
  assert.equal(other.status, 403);
  assert.equal(other.headers.get("access-control-allow-origin"), null);
});
