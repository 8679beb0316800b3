// deploy/k8s: the kustomize base and the NATS overlay, rendered by `kubectl kustomize`, every object
// checked against the Kubernetes schemas (kubernetes-models), and each node's command line parsed
// by the real CLI, so a manifest cannot ask `thinkagain serve` for a flag it does not have.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { parseServeArgs } from "../../cli_serve.ts";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const T = { timeout: 120_000 };
const TOKEN_FILE = join(mkdtempSync(join(tmpdir(), "k8s-manifests-")), "token");
writeFileSync(TOKEN_FILE, "a-token\n");

/**
 * Why kubectl cannot render the manifests here, or `undefined` when it can (`.ci/run` installs it
 * with apt): it is missing, or its kustomize predates the `labels` field (4.1).
 */
function kubectlMissing(): string | undefined {
  let reason: string | undefined;
  try {
    const out = execFileSync("kubectl", ["version", "--client"], { encoding: "utf8" });
    const m = /Kustomize Version: v(\d+)\.(\d+)/.exec(out);
    if (m === null || Number(m[1]) < 4 || (Number(m[1]) === 4 && Number(m[2]) < 1)) {
      reason = `kubectl's kustomize is older than 4.1 (${m?.[0] ?? "no version"}); the manifests were not rendered`;
    }
  } catch {
    reason = "kubectl is not installed (apt-get install -y kubectl); the manifests were not rendered";
  }
  if (reason !== undefined) console.log(`skipping deploy/k8s checks: ${reason}`);
  return reason;
}
const skip = kubectlMissing();

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

/** `kubectl kustomize <dir>`: the objects it renders. */
function render(dir: string): Promise<Obj[]> {
  return new Promise((resolve, reject) => {
    execFile("kubectl", ["kustomize", `${HERE}${dir}`], { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`kubectl kustomize ${dir} failed: ${stderr || err.message}`));
      const docs = parseAllDocuments(stdout);
      for (const d of docs) if (d.errors.length > 0) return reject(d.errors[0]);
      resolve(docs.map((d) => d.toJS() as Obj).filter((o) => o !== null));
    });
  });
}

/** The kubernetes-models class for an object's apiVersion and kind. */
async function modelOf(o: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const [group, version] = String(o.apiVersion).includes("/") ? o.apiVersion.split("/") : ["", o.apiVersion];
  const path = group === "" ? `kubernetes-models/${version}` : `kubernetes-models/${group}/${version}`;
  const mod = await import(path);
  const model = mod[o.kind];
  if (typeof model !== "function") throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  return model;
}

/** Checks every object against its schema; a failure names the object and what is wrong. */
async function validateAll(objects: Obj[]): Promise<void> {
  for (const o of objects) {
    const Model = await modelOf(o);
    try {
      new Model(o).validate();
    } catch (e) {
      throw new Error(`${o.kind} ${o.metadata?.name}: ${(e as Error).message}`);
    }
  }
}

/** `$(VAR)` in a command, expanded as the kubelet does from the pod's fieldRef env. */
function expand(args: string[], env: Obj[], pod: { name: string; namespace: string }): string[] {
  const values = new Map<string, string>();
  for (const e of env) {
    const field = e.valueFrom?.fieldRef?.fieldPath;
    if (field === "metadata.name") values.set(e.name, pod.name);
    else if (field === "metadata.namespace") values.set(e.name, pod.namespace);
    else if (typeof e.value === "string") values.set(e.name, e.value);
  }
  return args.map((a) =>
    a.replace(/\$\(([A-Z_]+)\)/g, (m, v) => {
      assert.ok(values.has(v), `${m} in the command has no env of that name`);
      return values.get(v)!;
    })
  );
}

/** The node pools: each StatefulSet whose container runs `thinkagain serve`, with its checks. */
function checkPools(objects: Obj[]): Map<string, { args: ReturnType<typeof parseServeArgs>; container: Obj }> {
  const pools = new Map<string, { args: ReturnType<typeof parseServeArgs>; container: Obj }>();
  for (const set of objects.filter((o) => o.kind === "StatefulSet")) {
    const spec = set.spec.template.spec;
    const container = spec.containers[0];
    if (container.command?.[0] !== "thinkagain") continue;
    const name = set.metadata.name;
    assert.equal(container.command[1], "serve", `${name} runs thinkagain serve`);
    const argv = expand(container.command.slice(2), container.env ?? [], { name: `${name}-0`, namespace: "default" });
    // the token file is the Secret's, mounted in the pod: here a stand-in holds a token
    const tokenAt = argv.indexOf("--token-file") + 1;
    assert.ok(tokenAt > 0, `${name} reads its token from a file`);
    const args = parseServeArgs(argv.map((a, i) => (i === tokenAt ? TOKEN_FILE : a)), {});
    assert.equal(args.host, "0.0.0.0", `${name} listens on every interface`);
    assert.equal(args.name, `${name}-0`, `${name}'s node is named after its pod ($(POD_NAME))`);
    // the headless Service the StatefulSet names, selecting its pods, on the node's port
    const svc = objects.find((o) => o.kind === "Service" && o.metadata.name === set.spec.serviceName);
    assert.ok(svc, `${name}'s serviceName ${set.spec.serviceName} is rendered`);
    assert.equal(svc.spec.clusterIP, "None", `${svc.metadata.name} is headless`);
    for (const [k, v] of Object.entries(svc.spec.selector)) {
      assert.equal(set.spec.template.metadata.labels[k], v, `${svc.metadata.name} selects ${name}'s pods`);
    }
    const port = container.ports.find((p: Obj) => p.containerPort === args.port);
    assert.ok(port, `${name} declares its node's port ${args.port}`);
    assert.ok(svc.spec.ports.some((p: Obj) => p.targetPort === port.name || p.targetPort === args.port));
    // probes: readiness on /healthz (503 while loading or draining), liveness on /livez
    assert.equal(container.readinessProbe.httpGet.path, "/healthz");
    assert.equal(container.livenessProbe.httpGet.path, "/livez");
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      assert.ok([port.name, args.port].includes(probe.httpGet.port), `${name}'s probes ask the node's port`);
    }
    // the drain fits in the grace period, with room for the readiness probe to notice first
    const notice = container.readinessProbe.periodSeconds * (container.readinessProbe.failureThreshold ?? 3);
    assert.ok(
      spec.terminationGracePeriodSeconds * 1000 > args.drainMs + notice * 1000,
      `${name}: terminationGracePeriodSeconds ${spec.terminationGracePeriodSeconds} s must outlast the drain ` +
        `(${args.drainMs} ms) and the readiness probe's notice (${notice} s)`,
    );
    // the token comes from the Secret, as a file, never on the command line
    assert.ok(!argv.includes("--token"), `${name} passes no --token`);
    const tokenFile = argv[tokenAt];
    const mount = container.volumeMounts.find((m: Obj) => tokenFile.startsWith(`${m.mountPath}/`));
    assert.ok(mount, `${name}'s --token-file ${tokenFile} is on a mounted volume`);
    const volume = spec.volumes.find((v: Obj) => v.name === mount.name);
    assert.equal(volume.secret?.secretName, "thinkagain-token", `${name}'s token comes from the Secret`);
    // a Secret's files belong to root: a pod running as another user reads them through its fsGroup,
    // and only if the mode lets the group read (0400 left the node unable to read its token)
    const ctx = spec.securityContext ?? {};
    if ((ctx.runAsUser ?? 0) !== 0) {
      const mode = volume.secret.items?.[0]?.mode ?? volume.secret.defaultMode ?? 0o644;
      assert.ok(
        ctx.fsGroup !== undefined && (mode & 0o040) !== 0,
        `${name} runs as uid ${ctx.runAsUser}: its token file (mode ${
          mode.toString(8)
        }) needs an fsGroup and group read`,
      );
    }
    pools.set(name, { args, container });
  }
  return pools;
}

test("deploy/k8s base renders a StatefulSet and a headless Service per pool, valid against the schemas", {
  ...T,
  skip,
}, async () => {
  const objects = await render("base");
  await validateAll(objects);
  const pools = checkPools(objects);
  assert.deepEqual([...pools.keys()].sort(), ["thinkagain-cpu", "thinkagain-gpu"]);
  const gpu = pools.get("thinkagain-gpu")!;
  assert.equal(gpu.args.gpus, 1);
  assert.equal(
    gpu.container.resources.limits["nvidia.com/gpu"],
    gpu.args.gpus,
    "the GPU pool's nvidia.com/gpu limit is what --gpus tells the node",
  );
  assert.equal(pools.get("thinkagain-cpu")!.container.resources.limits?.["nvidia.com/gpu"], undefined);
});

test("deploy/k8s NATS overlay adds a 3-server NATS cluster and --nats to every node pool", {
  ...T,
  skip,
}, async () => {
  const objects = await render("overlays/nats");
  await validateAll(objects);
  const pools = checkPools(objects);
  assert.equal(pools.size, 2);
  for (const [name, { args }] of pools) {
    assert.equal((args as unknown as { nats?: string }).nats, "nats://nats:4222", `${name} serves on NATS`);
  }
  const nats = objects.find((o) => o.kind === "StatefulSet" && o.metadata.name === "nats")!;
  assert.equal(nats.spec.replicas, 3);
  const client = objects.find((o) => o.kind === "Service" && o.metadata.name === "nats")!;
  assert.ok(client.spec.ports.some((p: Obj) => p.port === 4222), "nodes reach nats:4222");
  const config = objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "nats-config")!;
  for (let i = 0; i < 3; i++) assert.match(config.data["nats.conf"], new RegExp(`nats-${i}\\.nats-cluster:6222`));
});

test(
  "manifest checks catch a bad manifest: a schema error, an unknown serve flag, a grace period shorter than the drain",
  {
    ...T,
    skip,
  },
  async () => {
    const objects = await render("base");
    const broken = structuredClone(objects);
    broken.find((o) => o.kind === "Service")!.spec.ports[0].port = "seventy";
    await assert.rejects(validateAll(broken), /Service thinkagain-cpu: .*port must be integer/);
    const typo = structuredClone(objects);
    const cmd = typo.find((o) => o.kind === "StatefulSet")!.spec.template.spec.containers[0].command;
    cmd[cmd.indexOf("--drain-ms")] = "--drain-msec";
    assert.throws(() => checkPools(typo), /unknown option --drain-msec/);
    const short = structuredClone(objects);
    short.find((o) => o.kind === "StatefulSet")!.spec.template.spec.terminationGracePeriodSeconds = 30;
    assert.throws(() => checkPools(short), /must outlast the drain/);
  },
);
