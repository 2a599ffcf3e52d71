// An agent-sandbox Sandbox (spec.sandboxRef) end to end on a real API server, controller manager and
// Metacontroller, with our hook server, the real committer, a real containerd and a real registry —
// the pause → resume of docs/agent-sandbox.md. The tests play agent-sandbox's controller (the pod of a
// Sandbox, deleting it on Suspended, re-creating it from the pod template on Running) and the kubelet
// (pod status, the commit Job's container), as test/cluster/lifecycle.test.ts does; through a real
// kubelet once the single-node cluster of test/env exists.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AGENT_SANDBOX_CRD,
  AGENT_SANDBOX_GROUP,
  AGENT_SANDBOX_VERSION,
  agentSandboxCrd,
  CRI_POD_UID_LABEL,
  createSandboxPod,
  deletePodNow,
  getSandbox,
  markPodRunning,
  sandboxObject,
  type SandboxObject,
} from "../support/agent-sandbox-crd.js";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import {
  commitEnv,
  GROUP,
  SNAPSHOTS,
  VERSION,
  createNamespace,
  createNode,
  createSnapshot,
  finishJobPod,
  getSnapshot,
  plain,
  runCommitter,
  snapshotObject,
  startE2E,
  waitForJob,
  waitForJobGone,
  waitForJobPod,
  waitForSnapshot,
  type E2E,
  type Snapshot,
} from "../support/cluster-e2e.js";
import { missingComponents } from "../support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingClusterComponents() ?? missingComponents(["containerd", "runc", "ctr", "docker-registry"]);
const NODE = "node-a";
const NS = "e2e-agent-sandbox";
const ACCEPT = { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" };

describe.skipIf(missing)("agent-sandbox Sandbox: snapshot → Suspended → resume from the images (real API server, Metacontroller, committer, containerd, registry)", () => {
  let e: E2E | undefined;
  let cd: Containerd | undefined;
  let reg: TestRegistry | undefined;
  const containers: string[] = [];
  const env = (): { e: E2E; cd: Containerd; reg: TestRegistry } => {
    if (!e || !cd || !reg) throw new Error("environment not started");
    return { e, cd, reg };
  };

  beforeAll(async () => {
    cd = await startContainerd();
    reg = await startRegistry();
    // Metacontroller starts once the Sandbox CRD is served, so the first customize answer can relate it.
    e = await startE2E({
      metacontroller: false,
      env: commitEnv(cd, reg, { SOURCE_WAIT_SECONDS: "600" }),
    });
    await e.cluster.apply([agentSandboxCrd]);
    await e.cluster.waitForCrds([AGENT_SANDBOX_CRD]);
    await e.cluster.startMetacontroller();
    await createNode(e.cluster, NODE);
    await createNamespace(e.cluster, NS);
  }, 600_000);

  afterAll(async () => {
    if (cd) for (const id of containers) await removeContainer(cd, id).catch(() => undefined);
    await e?.stop();
    await reg?.close();
    await cd?.stop();
  });

  const reason = (s: Snapshot): string | undefined => s.status?.conditions?.find((c) => c.type === "Ready")?.reason;

  /** A snapshot of Sandbox `sb`, controlled by it (as a pause tool built on agent-sandbox would create it). */
  const ownedSnapshot = (name: string, sb: SandboxObject): Snapshot => {
    const s = snapshotObject(NS, name, { sandboxRef: { apiGroup: AGENT_SANDBOX_GROUP, kind: "Sandbox", name: sb.metadata.name } });
    if (s.metadata) {
      s.metadata.ownerReferences = [
        plain({ apiVersion: `${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}`, kind: "Sandbox", name: sb.metadata.name, uid: sb.metadata.uid, controller: true, blockOwnerDeletion: true }),
      ];
    }
    return s;
  };

  /** Plays the node for a commit Job: the real committer, then the Job pod's completion. */
  const commit = async (snapName: string): Promise<Snapshot> => {
    const { e } = env();
    const job = await waitForJob(e, NS, `${snapName}-commit`);
    const pod = await waitForJobPod(e, NS, `${snapName}-commit`);
    const run = await runCommitter(e, job);
    expect(run.code, run.stderr).toBe(0);
    await finishJobPod(e, NS, pod, 0, run.result);
    const done = await waitForSnapshot(e, NS, snapName, "Succeed", (s) => s.status?.phase === "Succeed");
    await waitForJobGone(e, NS, `${snapName}-commit`);
    return done;
  };

  let sandbox: SandboxObject | undefined;
  let imageRef = "";

  it("refuses a look-alike pod the Sandbox does not control, then snapshots the Sandbox's own pod: Retain, per-name tag", async () => {
    const { e, cd } = env();
    await e.cluster.apply([sandboxObject(NS, "asb", [{ name: "main", image: "localhost/test/busybox:1" }])]);
    const sb = await getSandbox(e.cluster, NS, "asb");
    sandbox = sb;

    // Any namespace user can create a pod named like the Sandbox; without the Sandbox as controller it is refused.
    await markPodRunning(e.cluster, await createSandboxPod(e.cluster, sb, "asb", NODE, false), {});
    await createSnapshot(e.cluster, ownedSnapshot("asb-pause", sb));
    const refused = await waitForSnapshot(e, NS, "asb-pause", "Pending, pod not owned", (s) => reason(s) === "SourceNotOwned");
    expect(refused.status?.phase).toBe("Pending");
    expect(refused.status?.conditions?.find((c) => c.type === "Ready")?.message).toContain("not controlled by Sandbox asb");
    const jobs = await e.cluster.batch.listNamespacedJob({ namespace: NS });
    expect(jobs.items.map((j) => j.metadata?.name)).toEqual([]);

    // agent-sandbox replaces it with the pod it controls; its container writes to the root filesystem.
    await deletePodNow(e.cluster, NS, "asb");
    const pod = await createSandboxPod(e.cluster, sb, "asb", NODE);
    const id = await runContainer(cd, "asb", NS, "main", { labels: { [CRI_POD_UID_LABEL]: pod.metadata?.uid ?? "" } });
    containers.push(id);
    await exec(cd, id, "mkdir -p /work && echo state-before-pause > /work/notes.txt");
    await markPodRunning(e.cluster, pod, { main: id });
    const committing = await waitForSnapshot(e, NS, "asb-pause", "Committing", (s) => s.status?.phase === "Committing", 90_000);
    expect(committing.status?.sourcePodName).toBe("asb");
    expect(committing.status?.deletionPolicy).toBe("Retain");
    imageRef = committing.status?.containers?.[0]?.imageUri ?? "";
    expect(imageRef.startsWith(`${reg?.host ?? ""}/snapshots/`)).toBe(true);
    expect(imageRef).toMatch(/asb.*main:snap-[0-9a-f]{32}$/);
    const job = await waitForJob(e, NS, "asb-pause-commit");
    expect(job.spec?.template.spec?.containers[0]?.args).toEqual(["asb", NS, `main:${imageRef}`]);

    const done = await commit("asb-pause");
    expect(done.status?.containers?.[0]?.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
  });

  it("a snapshot of a Suspended Sandbox waits, saying why; resuming it from the snapshot images keeps the root filesystem", async () => {
    const { e, cd } = env();
    const sb = sandbox;
    if (!sb) throw new Error("previous test did not create the Sandbox");
    // Pause: operatingMode Suspended; agent-sandbox deletes the pod (played here).
    const suspended = sandboxObject(NS, "asb", sb.spec.podTemplate.spec.containers);
    suspended.spec.operatingMode = "Suspended";
    await e.cluster.apply([suspended]);
    await deletePodNow(e.cluster, NS, "asb");
    for (const id of containers.splice(0)) await removeContainer(cd, id);

    await createSnapshot(e.cluster, ownedSnapshot("asb-later", sb));
    const waiting = await waitForSnapshot(e, NS, "asb-later", "Pending, suspended", (s) => reason(s) === "SourceSuspended");
    expect(waiting.status?.phase).toBe("Pending");
    expect(waiting.status?.conditions?.find((c) => c.type === "Ready")?.message).toContain("spec.operatingMode is Suspended");

    // Resume: the snapshot image in the pod template, operatingMode Running.
    const paused = await getSnapshot(e.cluster, NS, "asb-pause");
    const image = paused?.status?.containers?.find((c) => c.containerName === "main")?.imageUri ?? "";
    // status pins the image by its digest (repo:tag@sha256:…), so a later push to the tag cannot change a resume
    expect(image.startsWith(`${imageRef}@sha256:`), image).toBe(true);
    expect(image).toMatch(/@sha256:[0-9a-f]{64}$/);
    await e.cluster.apply([sandboxObject(NS, "asb", [{ name: "main", image }])]);
    const resumed = await getSandbox(e.cluster, NS, "asb");
    expect(resumed.spec.operatingMode).toBe("Running");
    expect(resumed.spec.podTemplate.spec.containers[0]?.image).toBe(image);
    // agent-sandbox (played) creates the pod from the template: the container runs the snapshot image.
    const pod = await createSandboxPod(e.cluster, resumed, "asb", NODE);
    await cd.ctr(["images", "pull", "--plain-http", image], { timeoutMs: 120_000 });
    const id = await runContainer(cd, "asb", NS, "main", { image, labels: { [CRI_POD_UID_LABEL]: pod.metadata?.uid ?? "" } });
    containers.push(id);
    expect((await exec(cd, id, "cat /work/notes.txt")).trim()).toBe("state-before-pause");
    await markPodRunning(e.cluster, pod, { main: id });

    // The waiting snapshot proceeds on the resumed pod.
    await waitForSnapshot(e, NS, "asb-later", "Committing", (s) => s.status?.phase === "Committing", 90_000);
    await commit("asb-later");
  });

  it("deleting a Sandbox-owned snapshot keeps its image (effective Retain) and removes the finalizer", async () => {
    const { e, reg } = env();
    const snap = await getSnapshot(e.cluster, NS, "asb-pause");
    const digest = snap?.status?.containers?.[0]?.imageDigest ?? "";
    const repo = imageRef.slice(reg.host.length + 1, imageRef.lastIndexOf(":"));
    const url = `${reg.httpUrl}/v2/${repo}/manifests/${digest}`;
    expect((await fetch(url, { method: "HEAD", headers: ACCEPT })).status).toBe(200);
    await e.cluster.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, name: "asb-pause" });
    await waitFor("snapshot asb-pause finalized", async () => (await getSnapshot(e.cluster, NS, "asb-pause")) === undefined, 60_000);
    expect((await fetch(url, { method: "HEAD", headers: ACCEPT })).status).toBe(200);
  });
});
