/**
 * `service(cls)`: a class whose instances are actors placed on a mesh. `.init(...args)` returns a
 * handle at once (`handle.ts`); every public method is on the handle as a direct call and as
 * `.go()`. Each instance (replica) has a mailbox (`mailbox.ts`): calls start in submission order,
 * one at a time unless `maxConcurrency` allows more; calls go to the replica with the fewest
 * outstanding calls (`deployment.ts`).
 *
 * @module
 */
import { connectResidents } from "./connect.ts";
import { currentContext } from "./context.ts";
import { HandleState, makeHandle, type ServiceHandle } from "./handle.ts";
import { type AnyClass, defineService, type ServiceOptions } from "./service_def.ts";
import { armTracing } from "./tracing/lifecycle.ts";

export type { MethodNames, ServiceConfig, ServiceHandle, ServiceMethod } from "./handle.ts";
export type { ServiceOptions } from "./service_def.ts";

/** A class made into a service by {@link service}. */
export interface ServiceClass<C extends AnyClass> {
  /** Creates a handle; the instance is created when the handle is first used in a mesh (or at once inside `mesh.run`). */
  init(...args: ConstructorParameters<C>): ServiceHandle<InstanceType<C>>;
  /**
   * Inside `mesh.run`: a handle to the resident instances of this service that the mesh's nodes
   * host (`thinkagain serve app.ts --start Name`), each call going to the least-loaded one. The
   * instances belong to their nodes: closing the mesh leaves them running. Rejects with a
   * `PlacementError` naming the nodes asked when none hosts one. See `mesh.connect(Service)`.
   */
  connect(): Promise<ServiceHandle<InstanceType<C>>>;
  /** The service's name. */
  readonly serviceName: string;
  /**
   * The options it was declared with (`Generator.options.gpus`; the seed's `_service_config`); a
   * handle's `config` has them with defaults filled in.
   */
  readonly options: Readonly<ServiceOptions>;
  /** The class itself. */
  readonly cls: C;
}

/**
 * Makes a service from a class.
 *
 * @param cls The class. Its public methods become the handle's methods.
 * @returns The service: `.init(...constructorArgs)` gives a handle.
 *
 * @example A counter keeps its state and sees its calls one at a time
 * ```ts
 * import * as ta from "../mod.ts";
 * const Counter = ta.service(class Counter {
 *   n = 0;
 *   async add(k: number) { const v = this.n; await Promise.resolve(); this.n = v + k; return this.n; }
 * });
 * const c = Counter.init();
 * await Promise.all(Array.from({ length: 100 }, () => c.add.go(1)));
 * if ((await c.add(0)) !== 100) throw new Error("lost an update");
 * ```
 */
export function service<C extends AnyClass>(cls: C): ServiceClass<C>;
/**
 * Makes a service from a class, with options.
 *
 * @param options `name`, `gpus`, `cpus`, `replicas`, `maxConcurrency`, `retries`, `timeoutMs`, `description`.
 * @param cls The class.
 * @returns The service.
 *
 * @example Replicas share the load
 * ```ts
 * import * as ta from "../mod.ts";
 * const Echo = ta.service({ replicas: 2 }, class Echo { async echo(x: string) { return x; } });
 * const e = Echo.init();
 * if ((await e.echo.go("hi")) !== "hi") throw new Error("unexpected");
 * ```
 */
export function service<C extends AnyClass>(options: ServiceOptions, cls: C): ServiceClass<C>;
export function service<C extends AnyClass>(a: ServiceOptions | C, b?: C): ServiceClass<C> {
  const [options, cls] = typeof a === "function" ? [{} as ServiceOptions, a] : [a, b];
  const def = defineService(options, cls as AnyClass);
  armTracing();
  const name = def.name;
  return {
    serviceName: name,
    options: Object.freeze({ ...options, name }),
    cls: cls as C,
    init(...args: ConstructorParameters<C>): ServiceHandle<InstanceType<C>> {
      const state = new HandleState(def, args);
      // inside mesh.run the instance is placed now, so a placement failure throws here
      const mesh = currentContext()?.mesh;
      if (mesh !== undefined) state.deployment(mesh);
      return makeHandle(state) as ServiceHandle<InstanceType<C>>;
    },
    connect(): Promise<ServiceHandle<InstanceType<C>>> {
      const mesh = currentContext()?.mesh;
      if (mesh === undefined) {
        return Promise.reject(
          new TypeError(
            `${name}.connect() needs a mesh: call it inside mesh.run(), or use mesh.connect(${name})`,
          ),
        );
      }
      return connectResidents(mesh, def) as Promise<ServiceHandle<InstanceType<C>>>;
    },
  };
}
