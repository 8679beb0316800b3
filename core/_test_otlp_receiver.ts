/**
 * Test helper (never published): an OTLP/HTTP trace receiver on 127.0.0.1, standing in for Jaeger
 * or Tempo. It accepts `POST /v1/traces` as protobuf (decoded with the OpenTelemetry protobuf
 * definitions, the protobufjs root generated from opentelemetry-proto that
 * `@opentelemetry/otlp-transformer` 0.215 ships) or as OTLP JSON, and keeps every span it got.
 *
 * @module
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import root from "@opentelemetry/otlp-transformer/build/src/generated/root.js";

/** A received span, flattened; ids are lowercase hex. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, unknown>;
  links: { traceId: string; spanId: string }[];
  events: { name: string; attributes: Record<string, unknown> }[];
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  /** The resource's `service.name`. */
  service: string;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** `http://127.0.0.1:PORT` (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes). */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Content types of the requests received, in order. */
  readonly contentTypes: string[];
  /** Resolves once at least `n` spans matching `filter` arrived (rejects after `timeoutMs`). */
  waitFor(n: number, filter?: (s: ReceivedSpan) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

// deno-lint-ignore no-explicit-any
type Any = any;
// deno-lint-ignore no-explicit-any
const pb: Any = (root as any).opentelemetry.proto;

const hex = (b: Uint8Array | string | undefined): string => {
  if (b === undefined || b === null) return "";
  if (typeof b === "string") return b.toLowerCase(); // OTLP JSON carries hex ids
  let s = "";
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, "0");
  return s;
};

function anyValue(v: Any): unknown {
  if (v == null) return undefined;
  if (v.stringValue != null) return v.stringValue;
  if (v.boolValue != null) return v.boolValue;
  if (v.intValue != null) return Number(v.intValue);
  if (v.doubleValue != null) return Number(v.doubleValue);
  if (v.arrayValue != null) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue != null) return attrs(v.kvlistValue.values);
  if (v.bytesValue != null) return v.bytesValue;
  return undefined;
}

function attrs(kvs: Any[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

const big = (v: Any): bigint => (v == null ? 0n : BigInt(v.toString()));

function flatten(req: Any, into: ReceivedSpan[]): void {
  for (const rs of req.resourceSpans ?? []) {
    const service = String(attrs(rs.resource?.attributes)["service.name"] ?? "");
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        into.push({
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          name: s.name,
          kind: Number(s.kind ?? 0),
          startNs: big(s.startTimeUnixNano),
          endNs: big(s.endTimeUnixNano),
          attributes: attrs(s.attributes),
          links: (s.links ?? []).map((l: Any) => ({ traceId: hex(l.traceId), spanId: hex(l.spanId) })),
          events: (s.events ?? []).map((e: Any) => ({ name: e.name, attributes: attrs(e.attributes) })),
          status: { code: Number(s.status?.code ?? 0), message: s.status?.message ?? "" },
          service,
        });
      }
    }
  }
}

function readBody(req: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    req.on("data", (c: Uint8Array) => chunks.push(c));
    req.on("end", () => {
      const n = chunks.reduce((s, c) => s + c.length, 0);
      const out = new Uint8Array(n);
      let o = 0;
      for (const c of chunks) {
        out.set(c, o);
        o += c.length;
      }
      resolve(out);
    });
    req.on("error", reject);
  });
}

/** Starts a receiver on a free port of 127.0.0.1. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const waiters = new Set<() => void>();
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "POST" || !req.url?.startsWith("/v1/traces")) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readBody(req);
      const type = String(req.headers["content-type"] ?? "");
      contentTypes.push(type);
      let decoded: Any;
      if (type.includes("json")) {
        decoded = JSON.parse(new TextDecoder().decode(body));
      } else {
        decoded = pb.collector.trace.v1.ExportTraceServiceRequest.decode(body);
      }
      flatten(decoded, spans);
      for (const w of [...waiters]) w();
      if (type.includes("json")) {
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else {
        const ok = pb.collector.trace.v1.ExportTraceServiceResponse.encode({}).finish();
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end(ok);
      }
    } catch (e) {
      res.writeHead(400, { "content-type": "text/plain" }).end(String(e));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    waitFor(n, filter = () => true, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const got = spans.filter(filter);
          if (got.length >= n) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(got);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(
            new Error(`OTLP receiver: expected ${n} spans, got ${spans.filter(filter).length} of ${spans.length}`),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      });
    },
  };
}
