// Private test module for transports/error_causes_test.ts, run as a child process with
// THINKAGAIN_TRANSPORT set: prints what making a mesh with a ws:// node gives.
import * as ta from "../mod.ts";

try {
  await using _mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: "ws://127.0.0.1:7070" })]);
  console.log("made");
} catch (e) {
  console.log(`${(e as Error).name}: ${(e as Error).message}`);
}
