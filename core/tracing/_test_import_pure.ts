// Run as its own process by arm_test.ts: prints whether loading the whole public API installed
// anything, then whether defining an op armed provider detection.
import * as events from "../events.ts";
import * as ta from "../../mod.ts";

const afterImport = events.submitProbe === undefined;
ta.op(async function armTestOp() {});
const afterOp = events.submitProbe !== undefined;
console.log(JSON.stringify({ afterImport, afterOp }));
