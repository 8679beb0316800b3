/**
 * Streams over the wire, both ends. A call whose result is a stream is answered with a `chunk` (its
 * first items); the consumer asks for the next chunks with `credit` requests, which also grant
 * the producer more items and bytes: several kept asked for at once (sent together, one message),
 * so the node sends each chunk as soon as it is full without waiting to be asked, and the consumer
 * grants a quarter window at a time. The node calls the producer's `next()` only while it holds
 * credit, so a producer never runs further ahead of its consumer than the window (in items, and
 * about that many bytes). Small items travel many to a chunk: the node sends what it has as soon as
 * the producer has to wait (or a chunk is full), and the first item at once.
 *
 * Why requests and replies (a pull) rather than frames pushed by the node: every transport already
 * carries requests and replies, in order, failing them all when the connection drops, so a node
 * that dies mid-stream fails the consumer's pending request (`NodeLostError`) with no new path.
 * Streams need a connection that tells the node when its consumer went away (WebSocket, in-memory):
 * over HTTP each request stands alone, so a consumer that vanished would leave its producer parked
 * for ever. There a streaming call fails with an error saying so.
 *
 * The parts, one file each (this module gathers their exports, for code that deals with both ends):
 *
 * - `stream_window.ts`: the credit window ({@linkcode StreamWindow}, {@linkcode resolveStreamWindow})
 *   and an item's estimated bytes ({@linkcode itemBytes});
 * - `stream_chunk.ts`: a chunk on the wire, written item by item on the node and read back on the
 *   consumer ({@linkcode decodeChunk}, {@linkcode decodeCallReply});
 * - `stream_outlet.ts`: the node's end ({@linkcode StreamOutlets});
 * - `remote_chunks.ts`: the consumer's end ({@linkcode RemoteChunks}).
 *
 * @example A chunk as a node sends it, read back as a consumer does
 * ```ts
 * import { decodeChunk, itemBytes } from "./stream_wire.ts";
 * import { encodeMessage } from "./protocol.ts";
 * import { deepStrictEqual, strictEqual } from "node:assert/strict";
 * const chunk = { t: "chunk" as const, items: [Uint8Array.of(1), 2], done: false };
 * deepStrictEqual(decodeChunk(encodeMessage(chunk)), chunk);
 * strictEqual(itemBytes(Uint8Array.of(1)), 9);
 * ```
 *
 * @module
 */
export { DEFAULT_STREAM_WINDOW, itemBytes, resolveStreamWindow, type StreamWindow } from "./stream_window.ts";
export { decodeCallReply, decodeChunk } from "./stream_chunk.ts";
export { StreamOutlets } from "./stream_outlet.ts";
export { type ChunkSource, RemoteChunks } from "./remote_chunks.ts";
