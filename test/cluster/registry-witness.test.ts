// On a real API server and Metacontroller, with our hook server and a real registry: snapshots of
// equally named pods in two namespaces get different image references (images per tenant), and a
// fabricated POST /finalize — naming a digest the snapshot does not own, or a snapshot that does not
// exist — deletes nothing: finalize re-reads the SandboxSnapshot from the API server first.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SyncResponse } from "../../src/api/types.js";
import { ANNOTATION_SNAPSHOT_UID } from "../../src/contract/commit-job.js";
import { missingComponents } from "../support/components.js";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import {
  GROUP,
  SNAPSHOTS,
  VERSION,
  createNamespace,
  createNode,
  createRunningPod,
  createSnapshot,
  getSnapshot,
  snapshotObject,
  startE2E,
  waitForJob,
  waitForSnapshot,
  type E2E,
  type Snapshot,
} from "../support/cluster-e2e.js";
import { pushTestImage } from "../support/registry-image.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingClusterComponents() ?? missingComponents(["docker-registry"]);
const NODE = "node-a";
const HOLD = "test.sandbox-snapshot.io/hold";
const MC_FINALIZER = "metacontroller.io/compositecontroller-sandbox-snapshot-controller";

describe.skipIf(missing)("the registry as witness on a real API server", () => {
  let e: E2E | undefined;
  let reg: TestRegistry | undefined;
  const env = (): { e: E2E; reg: TestRegistry } => {
    if (!e || !reg) throw new Error("environment not started");
    return { e, reg };
  };

  beforeAll(async () => {
    reg = await startRegistry();
    e = await startE2E({ env: { SNAPSHOT_REGISTRY: `${reg.host}/snapshots`, SNAPSHOT_REGISTRY_INSECURE: "true" } });
    await createNode(e.cluster, NODE);
    for (const ns of ["tenant-a", "tenant-b"]) {
      await createNamespace(e.cluster, ns);
      await createRunningPod(e.cluster, ns, "sbx", NODE, ["main"]);
    }
  }, 1_800_000);

  afterAll(async () => {
    await e?.stop();
    await reg?.close();
  });

  const postFinalize = async (body: unknown): Promise<SyncResponse> => {
    const res = await fetch(`http://127.0.0.1:${String(env().e.hooks.hookPort)}/finalize`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    return JSON.parse(text) as SyncResponse;
  };

  // The same pod and container name in both namespaces. (The snapshot names differ: the Metacontroller
  // built for these tests, v1.5.20, caches customize answers by parent name alone — upstream issue
  // #414, fixed since — so equally named parents in two namespaces would share one answer there.)
  it("two namespaces with the same pod and container name get different image repositories", async () => {
    const { e } = env();
    const names = { "tenant-a": "snap-a", "tenant-b": "snap-b" } as const;
    for (const [ns, name] of Object.entries(names)) await createSnapshot(e.cluster, snapshotObject(ns, name, { podName: "sbx" }));
    const repos: string[] = [];
    for (const [ns, name] of Object.entries(names)) {
      const s = await waitForSnapshot(e, ns, name, "Committing", (x) => x.status?.phase === "Committing");
      const ref = s.status?.containers?.[0]?.imageUri ?? "";
      expect(ref.startsWith(`${env().reg.host}/snapshots/${ns}/sbx/main:`)).toBe(true);
      const job = await waitForJob(e, ns, `${name}-commit`);
      expect(job.spec?.template.spec?.containers[0]?.args).toEqual(["sbx", ns, `main:${ref}`]);
      repos.push(ref.slice(0, ref.lastIndexOf(":")));
    }
    expect(repos[0]).not.toBe(repos[1]);
  });

  it("a finalize for a digest this snapshot does not own deletes nothing", async () => {
    const { e, reg } = env();
    // The victim: tenant-b's image, carrying tenant-b's snapshot UID.
    const victimSnap = await getSnapshot(e.cluster, "tenant-b", "snap-b");
    const victimRef = victimSnap?.status?.containers?.[0]?.imageUri ?? "";
    const repo = victimRef.slice(reg.host.length + 1, victimRef.lastIndexOf(":"));
    const victim = await pushTestImage(reg.client(), repo, { tag: "victim", annotations: { [ANNOTATION_SNAPSHOT_UID]: victimSnap?.metadata?.uid ?? "" } });

    // A real snapshot in tenant-a, really being deleted (held by a finalizer of ours once
    // Metacontroller has finalized it), so only its recorded images can be at stake.
    const held = snapshotObject("tenant-a", "held", { podName: "never-there", deletionPolicy: "Delete" });
    if (held.metadata) held.metadata.finalizers = [HOLD];
    await createSnapshot(e.cluster, held);
    await waitForSnapshot(e, "tenant-a", "held", "Pending", (x) => x.status?.phase === "Pending");
    await e.cluster.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: "tenant-a", plural: SNAPSHOTS, name: "held" });
    const stored = await waitForSnapshot(e, "tenant-a", "held", "finalized by Metacontroller, held by the test", (x) => x.metadata?.deletionTimestamp !== undefined && !(x.metadata.finalizers ?? []).includes(MC_FINALIZER));

    const forged = (parent: Snapshot): unknown => ({
      controller: { apiVersion: "metacontroller.k8s.io/v1alpha1", kind: "CompositeController", metadata: { name: "sandbox-snapshot-controller" } },
      parent: {
        ...parent,
        status: { phase: "Succeed", deletionPolicy: "Delete", containers: [{ containerName: "main", imageUri: `${victim.reference}@${victim.digest}`, imageDigest: victim.digest }] },
      },
      children: { "Job.batch/v1": {} },
      related: {},
      finalizing: true,
    });
    // Same UID, really being deleted — but its stored status records no such image.
    const a = await postFinalize(forged(stored));
    expect(a.finalized).toBe(false);
    expect(a.status.cleanup?.lastError).toMatch(/is not what SandboxSnapshot tenant-a\/held records/);
    // A snapshot that does not exist at all.
    const ghost = structuredClone(stored);
    if (ghost.metadata) ghost.metadata.name = "ghost";
    const b = await postFinalize(forged(ghost));
    expect(b.status.cleanup?.lastError).toContain("does not exist");
    // The victim's manifest is untouched.
    expect(await reg.client().headManifest(repo, victim.digest)).toBeDefined();
    expect(e.hookLog.join("\n")).toContain("does not vouch for this finalize request");

    // Let the held snapshot go.
    const obj = (await e.cluster.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: "tenant-a", plural: SNAPSHOTS, name: "held" })) as Snapshot;
    if (obj.metadata) obj.metadata.finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== HOLD);
    await e.cluster.custom.replaceNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: "tenant-a", plural: SNAPSHOTS, name: "held", body: obj });
    await waitFor("held snapshot gone", async () => (await getSnapshot(e.cluster, "tenant-a", "held")) === undefined, 60_000);
  });
});
