// Private test helper: a driver process that creates instances on the node at argv[2], prints
// "driver ready", and then idles (keeping its leases alive) until it is killed.
import process from "node:process";
import * as ta from "../mod.ts";
import { Solo } from "../examples/distributed_app.ts";

const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint: process.argv[2] })]);
await mesh.run(async () => {
  const a = Solo.init();
  const b = Solo.init();
  await Promise.all([a.echo.go(1), b.echo.go(2)]);
});
console.log("driver ready");
setInterval(() => {}, 60_000); // stays until killed
