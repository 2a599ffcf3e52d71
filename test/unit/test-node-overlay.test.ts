// deploy/overlays/test-node (what the node suite and `npm run cluster:up` install) differs from the
// default overlay in exactly what docs/try-it-locally.md lists: registry address and insecure flag,
// the two image references, and host networking for the hook server (with Metacontroller calling it
// by URL, and Pod Security "privileged" enforced on its namespace, which host networking needs). Anything else that drifts between the two makes this fail.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { missingComponents } from "../support/components.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
type Obj = Record<string, unknown> & { kind?: string; metadata?: { name?: string; namespace?: string } };

function render(dir: string): Obj[] {
  const out = execFileSync("kubectl", ["kustomize", dir], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

/** Generated ConfigMap names carry a content hash: compare them without it. */
function unhash(o: unknown): unknown {
  return JSON.parse(JSON.stringify(o).replace(/sandbox-snapshot-controller-config-[a-z0-9]{10}/g, "sandbox-snapshot-controller-config-HASH")) as unknown;
}

function key(o: Obj): string {
  return `${o.kind ?? ""}/${o.metadata?.namespace ?? ""}/${String(unhash(o.metadata?.name))}`;
}

/** Paths (a.b.0.c) where two JSON values differ. */
function diff(a: unknown, b: unknown, path = ""): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === "object" && typeof b === "object" && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => diff((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k));
  }
  return [path];
}

const missing = missingComponents(["kubectl"]);

describe.skipIf(missing)("deploy/overlays/test-node", () => {
  const base = new Map(render("deploy/overlays/default").map((o) => [key(o), unhash(o)]));
  const test = new Map(render("deploy/overlays/test-node").map((o) => [key(o), unhash(o)]));

  it("has the same objects as the default overlay", () => {
    expect([...test.keys()].sort()).toEqual([...base.keys()].sort());
  });

  it("differs only in the registry, the images, and the hook server's host networking", () => {
    const diffs: string[] = [];
    for (const [k, o] of test) for (const p of diff(base.get(k), o)) diffs.push(`${k} ${p}`);
    expect(diffs.sort()).toEqual([
      "CompositeController//sandbox-snapshot-controller spec.hooks.customize.webhook.path",
      "CompositeController//sandbox-snapshot-controller spec.hooks.customize.webhook.service",
      "CompositeController//sandbox-snapshot-controller spec.hooks.customize.webhook.url",
      "CompositeController//sandbox-snapshot-controller spec.hooks.customize.webhook.version",
      "CompositeController//sandbox-snapshot-controller spec.hooks.finalize.webhook.path",
      "CompositeController//sandbox-snapshot-controller spec.hooks.finalize.webhook.service",
      "CompositeController//sandbox-snapshot-controller spec.hooks.finalize.webhook.url",
      "CompositeController//sandbox-snapshot-controller spec.hooks.finalize.webhook.version",
      "CompositeController//sandbox-snapshot-controller spec.hooks.sync.webhook.path",
      "CompositeController//sandbox-snapshot-controller spec.hooks.sync.webhook.service",
      "CompositeController//sandbox-snapshot-controller spec.hooks.sync.webhook.url",
      "CompositeController//sandbox-snapshot-controller spec.hooks.sync.webhook.version",
      "ConfigMap/sandbox-snapshot-system/sandbox-snapshot-admission-params data.committerImage",
      "ConfigMap/sandbox-snapshot-system/sandbox-snapshot-controller-config-HASH data.COMMITTER_IMAGE",
      "ConfigMap/sandbox-snapshot-system/sandbox-snapshot-controller-config-HASH data.SNAPSHOT_REGISTRY",
      "ConfigMap/sandbox-snapshot-system/sandbox-snapshot-controller-config-HASH data.SNAPSHOT_REGISTRY_INSECURE",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.replicas",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.containers.0.env.0.value",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.containers.0.env.1.value",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.containers.0.env.2",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.containers.0.env.3",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.containers.0.image",
      "Deployment/sandbox-snapshot-system/sandbox-snapshot-controller spec.template.spec.hostNetwork",
      "Namespace//sandbox-snapshot-system metadata.labels.pod-security.kubernetes.io/audit",
      "Namespace//sandbox-snapshot-system metadata.labels.pod-security.kubernetes.io/enforce",
      "Namespace//sandbox-snapshot-system metadata.labels.pod-security.kubernetes.io/warn",
    ].sort());
  });

  it("points at the test node's registry and the images built from this repository", () => {
    const cm = [...test.values()].find((o) => (o as Obj).metadata?.name === "sandbox-snapshot-controller-config-HASH") as { data: Record<string, string> };
    expect(cm.data.SNAPSHOT_REGISTRY).toBe("10.213.0.1:5000/snapshots");
    expect(cm.data.SNAPSHOT_REGISTRY_INSECURE).toBe("true");
    expect(cm.data.COMMITTER_IMAGE).toBe("10.213.0.1:5000/sandbox-snapshot/image-committer:local");
    expect(cm.data.CONTAINERD_SOCKET).toBe("/run/containerd/containerd.sock");
    expect(cm.data.CONTAINERD_ROOT).toBe("/var/lib/containerd");
  });
});
