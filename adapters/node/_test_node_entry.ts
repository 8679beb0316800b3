// Private: a node app served by the Node adapter, bundled by limits_test.ts and run on Node itself.
// argv[2] is the ServeOptions as JSON; prints "listening <port>". Frames are echoed; a frame that
// starts with 0xff is counted instead, and `count <n>` is printed for each.
import process from "node:process";
import { createNodeApp } from "../../transports/server.ts";
import { serve, upgradeWebSocket } from "./serve.ts";

let counted = 0;
const app = createNodeApp((frame) => {
  if (frame[0] === 0xff) console.log(`count ${++counted}`);
  return frame;
}, { upgradeWebSocket, maxFrameBytes: 1 << 20 });
const server = await serve(app, { port: 0, ...JSON.parse(process.argv[2] ?? "{}") });
console.log(`listening ${server.port}`);
process.on("SIGTERM", () => void server.close().then(() => process.exit(0)));
