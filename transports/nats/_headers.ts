// The NATS headers of the frame protocol (private). A plain request carries none unless the node
// wants a token or the caller a deadline, so the common path parses no header block.

/** The caller's token (compared in constant time by the node). */
export const H_TOKEN = "Ta-Token";
/** Milliseconds the caller waits for the reply: the node aborts the work after it. */
export const H_TIMEOUT = "Ta-Timeout-Ms";
/** A one-way frame; its value is the sender's inbox (its connection's identity). */
export const H_NOTIFY = "Ta-Notify";
/** The sender closed its connection (value: its inbox): the node ends what it ran for it. */
export const H_BYE = "Ta-Bye";
/** Which of the listed requests the node still works on (a lost request is found by it). */
export const H_AUDIT = "Ta-Audit";
/** The reply is an error: its body is a CBOR `{ tag, message, data }`. */
export const H_ERROR = "Ta-Error";
/** The node refused the token. */
export const H_AUTH = "Ta-Auth";
/** A control request: the node answers with its direct endpoint (empty: none). */
export const H_DIRECT = "Ta-Direct";
/** The reply was too large for NATS: it is parked on the node under this id, to fetch over the direct link. */
export const H_PARKED = "Ta-Parked";
/**
 * With `Ta-Parked`: the name of the node that parked the reply; the caller asks that node's own
 * subject for its direct endpoint, and fetches the reply there.
 */
export const H_PARKED_AT = "Ta-Parked-At";
/**
 * On a reply from an op's queue group that opens a stream: the name of the member that runs it (its
 * later pulls go to that member's own subject).
 */
export const H_MEMBER = "Ta-Member";
