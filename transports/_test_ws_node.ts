// Private test helper: a node serving transports/_test_faults_app.ts on this runtime's adapter,
// with the WebSocket send queue bound given as argv[2] (an option the CLI does not take). Prints
// "ready <port>", then serves until killed.
import process from "node:process";
import { loadAdapter } from "../adapters/serve.ts";
import { NodeServer } from "./node_server.ts";
import { createNodeApp } from "./server.ts";
import "./_test_faults_app.ts";

const adapter = await loadAdapter();
const node = new NodeServer({ name: "n1" });
const app = createNodeApp(node.handler, {
  upgradeWebSocket: adapter.upgradeWebSocket,
  maxSendQueueBytes: Number(process.argv[2]),
});
const served = await adapter.serve(app, { port: 0 });
console.log(`ready ${served.port}`);
