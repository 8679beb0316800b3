// deploy/k8s/Dockerfile's build context: the repository root, whose .dockerignore leaves out what
// must not reach an image (the host's node_modules, .git, a token file), read with Docker's rules.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => readFileSync(`${ROOT}${path}`, "utf8");

/**
 * A .dockerignore's rules as Docker applies them (moby/patternmatcher): each line a pattern
 * relative to the context's root (a leading `/` changes nothing), `*` and `?` within one path
 * segment, `**` any number of segments, `!` takes back what an earlier line left out, the last
 * line that matches decides, and a directory left out takes what is under it along.
 */
function dockerIgnore(text: string): (path: string) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#")).map((l) => {
    const keep = l.startsWith("!");
    const pattern = (keep ? l.slice(1) : l).trim().replace(/^\/+/, "").replace(/\/+$/, "");
    const source = pattern.split("/").map((part) =>
      part === "**"
        ? "(?:[^/]+/)*"
        : part.replace(/[.+^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*").replaceAll("?", "[^/]") + "/"
    ).join("");
    return { keep, re: new RegExp(`^${source.slice(0, source.endsWith("/") ? -1 : undefined)}$`) };
  });
  return (path) => {
    const parts = path.split("/");
    let ignored = false;
    for (const { keep, re } of rules) {
      // the path or a directory above it
      if (parts.some((_, i) => re.test(parts.slice(0, i + 1).join("/")))) ignored = !keep;
    }
    return ignored;
  };
}

test("the image's build context is the repository root, as the Dockerfile's and the README's commands say", () => {
  const command = /docker build -f deploy\/k8s\/Dockerfile [^\n`]*? \.(?:`|$)/m;
  assert.match(read("deploy/k8s/Dockerfile").replace(/\\\n#\s*/g, ""), command);
  assert.match(read("README.md"), command);
});

test("the root's .dockerignore leaves the host's node_modules, .git and token files out of the image, and keeps the sources", () => {
  const ignored = dockerIgnore(read(".dockerignore"));
  for (
    const path of [
      "node_modules",
      "node_modules/bun/bin/bun",
      "examples/node_modules/x/index.js",
      ".git/HEAD",
      "token",
      "deploy/k8s/token",
      "cluster.token",
      ".env",
      ".bench-out/run.json",
      ".test-artifacts/dashboard.png",
      "node.log",
    ]
  ) assert.equal(ignored(path), true, `${path} reaches the image`);
  for (
    const path of [
      "package.json",
      "package-lock.json",
      "cli.ts",
      "mod.ts",
      "core/mesh.ts",
      "core/token.ts",
      "transports/node_server.ts",
      "examples/distributed_app.ts",
      "deploy/k8s/Dockerfile",
    ]
  ) assert.equal(ignored(path), false, `${path} is left out of the image`);
});
