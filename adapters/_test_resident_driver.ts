// Private test helper: a driver process that connects to the ResidentModel of the node at argv[2],
// prints "connected <label>", then keeps `argv[4]` calls in flight for ever, printing
// "answer <label> <i>" for each right answer (and "wrong ..." / "error ..." otherwise).
import process from "node:process";
import * as ta from "../mod.ts";
import { ResidentModel } from "./_test_resident_app.ts";

const [endpoint, label, inFlight = "4"] = process.argv.slice(2);
const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })]);
const model = await mesh.connect(ResidentModel);
console.log(`connected ${label}`);
let i = 0;
await mesh.run(() =>
  Promise.all(Array.from({ length: Number(inFlight) }, async () => {
    for (;;) {
      const n = i++;
      try {
        const out = await model.generate(`${label}-${n}`);
        console.log(out === `${label}-${n} -> ok` ? `answer ${label} ${n}` : `wrong ${label} ${n}: ${out}`);
      } catch (e) {
        console.log(`error ${label} ${n}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }))
);
