// Private: a browser page's program (bundled by _test_page_build.ts, driven by browser_test.ts):
// `call(endpoint, token)` calls Solo.echo on the node there and resolves with what came back, or
// with the error's name and message.
import * as ta from "../mod.ts";
import { Solo } from "../examples/distributed_app.ts";

async function call(endpoint: string, token: string): Promise<string> {
  const mesh = new ta.Mesh([new ta.MeshNode("n1", { endpoint })], { token });
  try {
    return String(await mesh.run(() => Solo.init().echo.go(`a page over ${new URL(endpoint).protocol}`)));
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  } finally {
    await mesh.close();
  }
}

Object.assign(globalThis, { call, ready: true });
