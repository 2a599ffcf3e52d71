// The SandboxSnapshot CRD (crds/) against a real API server: invalid objects are rejected with
// messages that name the field (OpenAPI schema and CEL rules), `kubectl explain` shows the
// descriptions, and the whole install (deploy/) passes a server-side dry run.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { fileURLToPath } from "node:url";
import { missingClusterComponents, readManifests, startCluster, waitFor, type Cluster } from "../support/cluster.js";
import { GROUP, SNAPSHOTS, SNAPSHOT_CRD, SNAPSHOT_CRD_FILE, VERSION, plain, snapshotObject, type Snapshot } from "../support/cluster-e2e.js";

const missing = missingClusterComponents();
const NS = "validation";
const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));

/** The API server's message for a rejected create/replace, or undefined when it was accepted. */
async function rejection(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    const e = err as { code?: number; body?: unknown; message?: string };
    if (e.code !== 422 && e.code !== 400) throw err;
    const body = typeof e.body === "string" ? e.body : JSON.stringify(e.body);
    try {
      return (JSON.parse(body) as { message?: string }).message ?? body;
    } catch {
      return body;
    }
  }
}

const longName = `s${"x".repeat(55)}`; // 56 characters

const invalid: { what: string; name?: string; spec?: Record<string, unknown>; omitSpec?: boolean; field: RegExp }[] = [
  { what: "both sources", spec: { sandboxName: "bs", podName: "p" }, field: /exactly one of spec\.sandboxName, spec\.podName or spec\.sandboxRef/ },
  { what: "neither source", spec: { containers: ["main"] }, field: /exactly one of spec\.sandboxName, spec\.podName or spec\.sandboxRef/ },
  { what: "sandboxRef with podName", spec: { podName: "p", sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox", name: "s" } }, field: /exactly one of spec\.sandboxName, spec\.podName or spec\.sandboxRef/ },
  { what: "sandboxRef of another apiGroup", spec: { sandboxRef: { apiGroup: "example.com", kind: "Sandbox", name: "s" } }, field: /spec\.sandboxRef: .*unsupported apiGroup\/kind; supported: apiGroup agents\.x-k8s\.io with kind Sandbox/ },
  { what: "sandboxRef of another kind", spec: { sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "SandboxClaim", name: "s" } }, field: /spec\.sandboxRef: .*unsupported apiGroup\/kind/ },
  { what: "sandboxRef without name", spec: { sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox" } }, field: /spec\.sandboxRef\.name: Required value/ },
  { what: "sandboxRef name not a DNS name", spec: { sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox", name: "Bad_Name" } }, field: /spec\.sandboxRef\.name: Invalid value/ },
  { what: "no spec at all", omitSpec: true, field: /spec: Required value/ },
  { what: "unknown deletionPolicy", spec: { podName: "p", deletionPolicy: "Keep" }, field: /spec\.deletionPolicy: Unsupported value: "Keep"/ },
  { what: "name over 55 characters", name: longName, spec: { podName: "p" }, field: /metadata\.name must be at most 55 characters/ },
  { what: "sandboxName not a DNS name", spec: { sandboxName: "Bad_Name" }, field: /spec\.sandboxName: Invalid value/ },
  { what: "empty podName", spec: { podName: "" }, field: /spec\.podName: Invalid value/ },
  { what: "podName over 253 characters", spec: { podName: "p".repeat(254) }, field: /spec\.podName: Too long/ },
  { what: "sandboxName of the wrong type", spec: { sandboxName: 42 }, field: /spec\.sandboxName: Invalid value: "integer"/ },
  { what: "duplicate containers", spec: { podName: "p", containers: ["main", "main"] }, field: /spec\.containers\[1\]: Duplicate value/ },
  { what: "container name not a DNS label", spec: { podName: "p", containers: ["Main!"] }, field: /spec\.containers\[0\]: Invalid value/ },
  { what: "container name over 63 characters", spec: { podName: "p", containers: ["c".repeat(64)] }, field: /spec\.containers\[0\]: Too long/ },
  { what: "more than 32 containers", spec: { podName: "p", containers: Array.from({ length: 33 }, (_, i) => `c${String(i)}`) }, field: /spec\.containers: Too many/ },
];

describe.skipIf(missing)("SandboxSnapshot API validation on a real API server", () => {
  let cluster: Cluster | undefined;
  const c = (): Cluster => {
    if (!cluster) throw new Error("cluster not started");
    return cluster;
  };
  const create = (body: Snapshot): Promise<unknown> =>
    c().custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, body });

  beforeAll(async () => {
    // Validation needs no controller: API server and controller manager only.
    cluster = await startCluster({ metacontroller: false });
    await cluster.apply(readManifests(SNAPSHOT_CRD_FILE));
    await cluster.waitForCrds([SNAPSHOT_CRD]);
    await cluster.core.createNamespace({ body: plain({ metadata: { name: NS } }) });
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it.each(invalid)("rejects $what with a message naming the field", async (t) => {
    const obj = snapshotObject(NS, t.name ?? "bad", t.spec ?? {});
    if (t.omitSpec) delete (obj as { spec?: unknown }).spec;
    const msg = await rejection(create(obj));
    expect(msg, `${t.what} was accepted`).toBeDefined();
    expect(msg).toMatch(t.field);
  });

  it("accepts a valid snapshot of each source kind, and a 55-character name", async () => {
    expect(await rejection(create(snapshotObject(NS, "ok-pod", { podName: "p", containers: ["main", "sidecar"], deletionPolicy: "Retain" })))).toBeUndefined();
    expect(await rejection(create(snapshotObject(NS, "ok-sandbox", { sandboxName: "bs" })))).toBeUndefined();
    expect(await rejection(create(snapshotObject(NS, "ok-agent-sandbox", { sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox", name: "my-agent" } })))).toBeUndefined();
    expect(await rejection(create(snapshotObject(NS, `s${"x".repeat(54)}`, { podName: "p" })))).toBeUndefined();
  });

  it("rejects any change of spec after creation (immutable), naming spec", async () => {
    const api = c().custom;
    const cur = (await api.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, name: "ok-pod" })) as Snapshot;
    for (const change of [{ podName: "other" }, { deletionPolicy: "Delete" }, { containers: ["main"] }]) {
      const body = { ...cur, spec: { ...cur.spec, ...change } };
      const msg = await rejection(api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, name: "ok-pod", body }));
      expect(msg, `spec change ${JSON.stringify(change)} was accepted`).toMatch(/spec: Invalid value: .*spec is immutable/);
    }
    // Metadata is not frozen (labels may change).
    const labelled = structuredClone(cur);
    if (labelled.metadata) labelled.metadata.labels = { team: "a" };
    expect(await rejection(api.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, name: "ok-pod", body: labelled }))).toBeUndefined();
  });

  it("`kubectl explain sandboxsnapshot.spec` shows the field descriptions", async () => {
    // The CRD's OpenAPI is published a moment after it is established.
    const out = await waitFor("kubectl explain", async () => {
      const r = await c().kubectlAsync(["explain", "sandboxsnapshot.spec"]);
      return r.status === 0 && r.stdout.includes("sandboxName") ? r.stdout : undefined;
    }, 30_000, 500);
    expect(out).toMatch(/Exactly one source must be set: sandboxName/);
    expect(out).toMatch(/sandboxRef\s+<Object>/);
    const ref = await c().kubectlAsync(["explain", "sandboxsnapshot.spec.sandboxRef"]);
    expect(ref.status, ref.stderr).toBe(0);
    expect(ref.stdout).toMatch(/agents\.x-k8s\.io\/pod-name/);
    expect(ref.stdout).toMatch(/apiGroup\s+<string> -required-/);
    expect(out).toMatch(/deletionPolicy\s+<string>/);
    expect(out).toMatch(/Name of a BatchSandbox/);
    const dp = await c().kubectlAsync(["explain", "sandboxsnapshot.spec.deletionPolicy"]);
    expect(dp.status, dp.stderr).toBe(0);
    expect(dp.stdout).toMatch(/Retain/);
    const st = await c().kubectlAsync(["explain", "sbxsnap.status.phase"]);
    expect(st.stdout).toMatch(/Succeed/);
  });

  it("the install (deploy/) passes `kubectl apply --dry-run=server`", async () => {
    const k = c();
    // The CompositeController kind comes from Metacontroller's CRDs; the namespace must exist for
    // namespaced objects to be dry-run (a dry-run Namespace is not persisted).
    await k.core.createNamespace({ body: plain({ metadata: { name: "sandbox-snapshot-system" } }) });
    const rendered = await k.kubectlAsync(["kustomize", DEPLOY]);
    expect(rendered.status, rendered.stderr).toBe(0);
    // Metacontroller v1.5.20's CRD (the release built here) predates hook `version`, a field later
    // releases accept; drop only that field, so strict validation checks everything else.
    const docs = parseAllDocuments(rendered.stdout).map((d) => d.toJS() as Record<string, unknown> | null).filter((d) => d !== null);
    for (const d of docs) {
      if (d.kind !== "CompositeController") continue;
      const hooks = (d.spec as { hooks?: Record<string, { webhook?: Record<string, unknown> }> }).hooks ?? {};
      for (const h of Object.values(hooks)) delete h.webhook?.version;
    }
    const input = docs.map((d) => stringify(d)).join("---\n");
    const r = await k.kubectlAsync(["apply", "--dry-run=server", "--validate=strict", "-f", "-"], { input });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/deployment\.apps\/sandbox-snapshot-controller (created|configured) \(server dry run\)/);
  });
});
