// Which member of an op's queue group runs each stream (private). A call sent to a queue group
// goes to any member, but the stream it answers with lives on that member only: its later `credit`
// requests must go there, not to the group (another member would not know the stream). The member
// says so in a header of the stream's first chunk; these helpers spot the few frames concerned by
// their first or last bytes, and decode only those.
import { decode } from "../../core/codec.ts";
import { decodeCallReply } from "../stream_chunk.ts";

/** The most streams a connection routes at once; past it the oldest is forgotten. */
const MAX_ROUTES = 10_000;

/** `{ t: "credit", …` (a map of 4): how every credit frame starts. */
const CREDIT_HEAD = Uint8Array.of(0xa4, 0x61, 0x74, 0x66, 0x63, 0x72, 0x65, 0x64, 0x69, 0x74);
/** `{ t: "cancel", …` (a map of 2). */
const CANCEL_HEAD = Uint8Array.of(0xa2, 0x61, 0x74, 0x66, 0x63, 0x61, 0x6e, 0x63, 0x65, 0x6c);
/** `… done: false }`: how a chunk that is not a stream's last ends. */
const OPEN_TAIL = Uint8Array.of(0x64, 0x64, 0x6f, 0x6e, 0x65, 0xf4);
/** `… done: true }`. */
const DONE_TAIL = Uint8Array.of(0x64, 0x64, 0x6f, 0x6e, 0x65, 0xf5);
/** Control frames are small: a larger frame is a call. */
const CONTROL_MAX_BYTES = 1024;

function startsWith(frame: Uint8Array, head: Uint8Array): boolean {
  if (frame.byteLength < head.length) return false;
  for (let i = 0; i < head.length; i++) if (frame[i] !== head[i]) return false;
  return true;
}

function endsWith(frame: Uint8Array, tail: Uint8Array): boolean {
  const at = frame.byteLength - tail.length;
  if (at < 0) return false;
  for (let i = 0; i < tail.length; i++) if (frame[at + i] !== tail[i]) return false;
  return true;
}

/** The `cid` of a small frame of type `t` starting with `head`, else `undefined`. */
function cidOf(frame: Uint8Array, head: Uint8Array, t: string): string | undefined {
  if (frame.byteLength > CONTROL_MAX_BYTES || !startsWith(frame, head)) return undefined;
  try {
    const m = decode(frame) as { t?: unknown; cid?: unknown };
    return m?.t === t && typeof m.cid === "string" ? m.cid : undefined;
  } catch {
    return undefined;
  }
}

/** The call id of a `credit` frame (a stream's pull), else `undefined`. */
export function creditCid(frame: Uint8Array): string | undefined {
  return cidOf(frame, CREDIT_HEAD, "credit");
}

/** The call id of a `cancel` frame, else `undefined`. */
export function cancelCid(frame: Uint8Array): string | undefined {
  return cidOf(frame, CANCEL_HEAD, "cancel");
}

/** Whether a reply is a chunk of a stream that goes on (more chunks to pull). */
export function opensStream(reply: Uint8Array): boolean {
  if (!endsWith(reply, OPEN_TAIL)) return false; // nearly every other reply is told here
  try {
    const m = decodeCallReply(reply);
    return m.t === "chunk" && !m.done;
  } catch {
    return false;
  }
}

/** Whether a reply is (probably) a stream's last chunk: its route is not needed any more. */
export function endsStream(reply: Uint8Array): boolean {
  return endsWith(reply, DONE_TAIL);
}

/** The call id of a `call` frame (read once per stream, when its first chunk came back). */
export function callCid(frame: Uint8Array): string | undefined {
  try {
    const m = decode(frame) as { t?: unknown; cid?: unknown };
    return m?.t === "call" && typeof m.cid === "string" ? m.cid : undefined;
  } catch {
    return undefined;
  }
}

/** The member of a queue group that runs each open stream of one connection, by call id. */
export class StreamRoutes {
  readonly #members = new Map<string, string>();

  /** How many streams are routed. */
  get size(): number {
    return this.#members.size;
  }

  /** The stream call `cid` answered with runs on `member`. */
  opened(cid: string, member: string): void {
    if (this.#members.size >= MAX_ROUTES) {
      const [oldest] = this.#members.keys();
      this.#members.delete(oldest);
    }
    this.#members.set(cid, member);
  }

  /** The member a frame must go to (a `credit` of a routed stream), else `undefined`. */
  memberFor(frame: Uint8Array): { cid: string; member: string } | undefined {
    if (this.#members.size === 0) return undefined;
    const cid = creditCid(frame);
    const member = cid === undefined ? undefined : this.#members.get(cid);
    return member === undefined ? undefined : { cid: cid!, member };
  }

  /** Forgets a stream's route (it ended, failed, or was cancelled). */
  forget(cid: string): void {
    this.#members.delete(cid);
  }
}
