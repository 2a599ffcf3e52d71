// End to end on a real API server, controller manager and Metacontroller, with our hook server:
// the commit Job appears as DESIGN.md describes it; the test plays the node's part — it runs the real
// committer with the Job's arguments and environment against a real containerd (where the "pod's"
// containers run with CRI labels) and a real registry, and writes the result into the Job pod's status
// as a kubelet would. The Job controller completes the Job, the snapshot reaches Succeed with the
// digest, Metacontroller deletes the Job, and the image runs. Also the failure path (Failed + unpause
// Job), deletion (finalize: registry clean-up, finalizer removed) and a snapshot that waits for its
// source.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Watch } from "@kubernetes/client-node";
import { missingComponents } from "../support/components.js";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import {
  commitEnv,
  GROUP,
  SNAPSHOTS,
  VERSION,
  createNamespace,
  createNode,
  createRunningPod,
  createSnapshot,
  finishJobPod,
  getSnapshot,
  isNotFound,
  jobCondition,
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
import { exec, labelPodUid, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingClusterComponents() ?? missingComponents(["containerd", "runc", "ctr", "docker-registry"]);
const NODE = "node-a";
const FINALIZER = "metacontroller.io/compositecontroller-sandbox-snapshot-controller";

describe.skipIf(missing)("SandboxSnapshot end to end (real API server, Metacontroller, committer, containerd, registry)", () => {
  let e: E2E | undefined;
  let cd: Containerd | undefined;
  let reg: TestRegistry | undefined;
  const env = (): { e: E2E; cd: Containerd; reg: TestRegistry } => {
    if (!e || !cd || !reg) throw new Error("environment not started");
    return { e, cd, reg };
  };

  beforeAll(async () => {
    cd = await startContainerd();
    reg = await startRegistry();
    e = await startE2E({
      env: commitEnv(cd, reg, { SOURCE_WAIT_SECONDS: "600" }),
    });
    await createNode(e.cluster, NODE);
  }, 600_000);

  afterAll(async () => {
    await e?.stop();
    await reg?.close();
    await cd?.stop();
  });

  const ns = "e2e-pod";
  let sourceContainer = "";

  it("a snapshot of a Pod: commit Job with node, arguments, mounts and env; real committer; Succeed; Job removed; the image runs", async () => {
    const { e, cd, reg } = env();
    await createNamespace(e.cluster, ns);
    sourceContainer = await runContainer(cd, "sbx", ns, "main");
    await exec(cd, sourceContainer, "mkdir -p /data && echo hello-from-the-sandbox > /data/hello.txt && rm -f /bin/true");
    await labelPodUid(cd, sourceContainer, (await createRunningPod(e.cluster, ns, "sbx", NODE, ["main"], {}, { main: sourceContainer })).metadata?.uid);

    const created = await createSnapshot(e.cluster, snapshotObject(ns, "snap-pod", { podName: "sbx" }));
    const job = await waitForJob(e, ns, "snap-pod-commit");

    // Owned by the snapshot (Metacontroller's apply), pinned to the source's node, never retried.
    const owner = job.metadata?.ownerReferences?.find((o) => o.controller === true);
    expect(owner).toMatchObject({ kind: "SandboxSnapshot", name: "snap-pod", uid: created.metadata?.uid });
    expect(job.spec?.backoffLimit).toBe(0);
    expect(job.spec?.activeDeadlineSeconds).toBe(e.config.commitJobDeadlineSeconds);
    expect(job.spec?.ttlSecondsAfterFinished).toBeUndefined();
    const podSpec = job.spec?.template.spec;
    expect(podSpec?.nodeName).toBe(NODE);
    expect(podSpec?.restartPolicy).toBe("Never");
    const c = podSpec?.containers[0];
    expect(c?.image).toBe(e.config.committerImage);
    expect(c?.command).toBeUndefined();
    const snap = await waitForSnapshot(e, ns, "snap-pod", "Committing", (s) => s.status?.phase === "Committing");
    const imageRef = snap.status?.containers?.[0]?.imageUri ?? "";
    expect(imageRef).toMatch(new RegExp(`^${reg.host.replace(/[.]/g, "\\.")}/snapshots/${ns}/sbx/main:snap-[0-9a-f]{32}$`));
    expect(c?.args).toEqual(["sbx", ns, `main:${imageRef}`]);
    expect(c?.securityContext?.privileged).toBe(true);
    expect(c?.terminationMessagePolicy).toBe("FallbackToLogsOnError");
    const mounts = Object.fromEntries((c?.volumeMounts ?? []).map((m) => [m.mountPath, m]));
    expect(mounts[cd.socket]).toBeDefined();
    expect(mounts[cd.root]?.readOnly).toBe(true);
    const volumes = Object.fromEntries((podSpec?.volumes ?? []).map((v) => [v.name, v]));
    expect(volumes[mounts[cd.socket]?.name ?? ""]?.hostPath?.path).toBe(cd.socket);
    expect(volumes[mounts[cd.root]?.name ?? ""]?.hostPath?.path).toBe(cd.root);
    const scratch = Object.values(volumes).find((v) => v.emptyDir !== undefined);
    expect(scratch?.emptyDir?.sizeLimit).toBe("1Gi");
    const envs = Object.fromEntries((c?.env ?? []).map((v) => [v.name, v.value]));
    expect(envs).toMatchObject({
      CONTAINERD_SOCKET: cd.socket,
      CONTAINERD_ROOT: cd.root,
      CONTAINERD_NAMESPACE: "k8s.io",
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_COMPRESSION: "gzip",
      SNAPSHOT_UID: created.metadata?.uid,
      SNAPSHOT_NAME: "snap-pod",
      SNAPSHOT_NAMESPACE: ns,
      SNAPSHOT_SCRATCH_LIMIT_BYTES: String(1024 ** 3),
    });

    // The Job controller created the Job's pod on the node; play the kubelet with the real committer.
    const jobPod = await waitForJobPod(e, ns, "snap-pod-commit");
    expect(jobPod.spec?.nodeName).toBe(NODE);
    const run = await runCommitter(e, job);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.result) as { containers: { name: string; image: string; digest: string }[] };
    expect(result.containers).toHaveLength(1);
    expect(result.containers[0]?.image).toBe(imageRef);
    // The sandbox was resumed by the committer.
    expect(await taskStatus(cd, sourceContainer)).toBe("RUNNING");
    await finishJobPod(e, ns, jobPod, 0, run.result);

    // The Job controller completes the Job; the hook reads the result and finishes the snapshot.
    const done = await waitForSnapshot(e, ns, "snap-pod", "Succeed", (s) => s.status?.phase === "Succeed");
    // Verified in the registry and pinned by digest.
    expect(done.status?.containers?.[0]).toMatchObject({ containerName: "main", imageUri: `${imageRef}@${result.containers[0]?.digest ?? ""}`, imageDigest: result.containers[0]?.digest });
    expect(done.status?.conditions?.find((x) => x.type === "ImageAvailable")?.status).toBe("True");
    expect(done.status?.conditions?.find((x) => x.type === "Ready")?.status).toBe("True");
    expect(done.status?.sourcePodName).toBe("sbx");
    expect(done.status?.sourceNodeName).toBe(NODE);
    await waitForJobGone(e, ns, "snap-pod-commit");
    // A snapshot is a point in time: Succeed is final and the commit Job is never created again (a
    // second commit would freeze the sandbox again). Metacontroller may send the next sync with the
    // parent as its informer cache had it *before* the Succeed status landed, with the Job already
    // deleted — the hook must not fall back to Committing and re-create the Job then.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const again = await getSnapshot(e.cluster, ns, "snap-pod");
      expect(again?.status?.phase, "Succeed regressed").toBe("Succeed");
      const jobs = await e.cluster.batch.listNamespacedJob({ namespace: ns, labelSelector: "sandbox.opensandbox.io/sandbox-snapshot-name=snap-pod" });
      expect(jobs.items.map((j) => j.metadata?.name), "commit Job re-created after Succeed").toEqual([]);
    }

    // The image runs: pull it from the registry into containerd and read the captured file.
    await cd.ctr(["images", "pull", "--plain-http", imageRef], { timeoutMs: 120_000 });
    const out = await cd.ctr(["run", "--rm", "--snapshotter", "overlayfs", imageRef, `run-${String(Date.now())}`, "/bin/cat", "/data/hello.txt"]);
    expect(out.trim()).toBe("hello-from-the-sandbox");
  });

  it("a failed commit: Failed with the committer's error, and an unpause Job on the same node until it completes", async () => {
    const { e } = env();
    await createSnapshot(e.cluster, snapshotObject(ns, "snap-fail", { podName: "sbx" }));
    await waitForJob(e, ns, "snap-fail-commit");
    const pod = await waitForJobPod(e, ns, "snap-fail-commit");
    await finishJobPod(e, ns, pod, 1, JSON.stringify({ error: "push to registry failed: connection refused" }));

    const failed = await waitForSnapshot(e, ns, "snap-fail", "Failed", (s) => s.status?.phase === "Failed");
    const cond = failed.status?.conditions?.find((x) => x.type === "Failed");
    expect(cond?.status).toBe("True");
    expect(cond?.message ?? "").toContain("connection refused");

    const unpause = await waitForJob(e, ns, "snap-fail-unpause");
    const c = unpause.spec?.template.spec?.containers[0];
    expect(unpause.spec?.template.spec?.nodeName).toBe(NODE);
    expect(c?.args).toEqual(["unpause", "sbx", ns, "main"]);
    // The commit Job is no longer wanted once the result is recorded.
    await waitForJobGone(e, ns, "snap-fail-commit");

    // Play the node: the real committer's unpause, then the pod's completion.
    const run = await runCommitter(e, unpause);
    expect(run.code, run.stderr).toBe(0);
    const upod = await waitForJobPod(e, ns, "snap-fail-unpause");
    await finishJobPod(e, ns, upod, 0, run.result || "{}");
    // The Job controller completes the unpause Job; the hook then stops returning it and
    // Metacontroller deletes it (either may already have happened when we look).
    await waitFor("unpause Job complete or gone", async () => {
      try {
        return jobCondition(await e.cluster.batch.readNamespacedJob({ namespace: ns, name: "snap-fail-unpause" }), "Complete");
      } catch (err) {
        if (isNotFound(err)) return true;
        throw err;
      }
    }, 60_000);
    await waitForJobGone(e, ns, "snap-fail-unpause");
    const after = await getSnapshot(e.cluster, ns, "snap-fail");
    expect(after?.status?.phase).toBe("Failed");
  });

  it("deletion: the finalize hook removes the snapshot's manifest from the registry, then the finalizer", async () => {
    const { e, reg } = env();
    const snap = await getSnapshot(e.cluster, ns, "snap-pod");
    expect(snap?.metadata?.finalizers ?? []).toContain(FINALIZER);
    expect(snap?.status?.deletionPolicy).toBe("Delete");
    const ref = (snap?.status?.containers?.[0]?.imageUri ?? "").split("@")[0] ?? "";
    const digest = snap?.status?.containers?.[0]?.imageDigest ?? "";
    const repo = ref.slice(reg.host.length + 1, ref.lastIndexOf(":"));
    const manifestUrl = `${reg.httpUrl}/v2/${repo}/manifests/${digest}`;
    const accept = { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" };
    expect((await fetch(manifestUrl, { method: "HEAD", headers: accept })).status).toBe(200);

    // Every stored version of the snapshot until it is gone: the clean-up result must be written
    // before the finalizer is removed (a status returned with `finalized: true` is never stored).
    const stored: { type: string; obj: Snapshot }[] = [];
    const watch = await new Watch(e.cluster.kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${ns}/${SNAPSHOTS}`,
      // From the version just read: a watch "from now" can time out (504) while the API server's watch
      // cache waits for a revision of another resource (this etcd sends no progress notifications).
      { fieldSelector: "metadata.name=snap-pod", resourceVersion: snap?.metadata?.resourceVersion },
      (type: string, obj: Snapshot) => stored.push({ type, obj }),
      () => undefined,
    );
    try {
      await e.cluster.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: SNAPSHOTS, name: "snap-pod" });
      await waitFor("snapshot snap-pod gone (finalized)", async () => (await getSnapshot(e.cluster, ns, "snap-pod")) === undefined, 60_000);
      await waitFor("the watch saw the deletion", () => Promise.resolve(stored.some((w) => w.type === "DELETED")), 10_000);
    } finally {
      watch.abort();
    }
    expect((await fetch(manifestUrl, { method: "HEAD", headers: accept })).status).toBe(404);
    expect(stored.filter((w) => w.type === "ERROR")).toEqual([]);
    // The DELETED event carries the last stored version.
    const last = stored.find((w) => w.type === "DELETED")?.obj;
    expect(last?.status?.cleanup).toMatchObject({ state: "Done", deletedDigests: [digest] });
  });

  it("a snapshot created before its BatchSandbox waits in Pending, then proceeds when the sandbox's pod runs", async () => {
    const { e, cd } = env();
    const ns2 = "e2e-late";
    await createNamespace(e.cluster, ns2);
    await createSnapshot(e.cluster, snapshotObject(ns2, "snap-late", { sandboxName: "bs-late" }));
    const waiting = await waitForSnapshot(e, ns2, "snap-late", "Pending with a reason", (s) => s.status?.phase === "Pending" && (s.status.conditions?.length ?? 0) > 0);
    expect(JSON.stringify(waiting.status?.conditions)).toMatch(/bs-late|source|wait/i);

    const late = (await e.cluster.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns2,
      plural: "batchsandboxes",
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "BatchSandbox",
        metadata: { name: "bs-late", namespace: ns2 },
        spec: { replicas: 1, template: { spec: { containers: [{ name: "sandbox", image: "localhost/test/busybox:1" }] } } },
      },
    })) as { metadata: { uid: string } };
    // OpenSandbox's BatchSandbox controller creates the pod with a controller reference to it.
    const lateOwner = { apiVersion: `${GROUP}/${VERSION}`, kind: "BatchSandbox", name: "bs-late", uid: late.metadata.uid };
    const id = await runContainer(cd, "bs-late-0", ns2, "sandbox");
    try {
      await labelPodUid(cd, id, (await createRunningPod(e.cluster, ns2, "bs-late-0", NODE, ["sandbox"], { "batch-sandbox.sandbox.opensandbox.io/name": "bs-late" }, { sandbox: id }, lateOwner)).metadata?.uid);
      const job = await waitForJob(e, ns2, "snap-late-commit", 90_000);
      expect(job.spec?.template.spec?.nodeName).toBe(NODE);
      expect(job.spec?.template.spec?.containers[0]?.args?.slice(0, 2)).toEqual(["bs-late-0", ns2]);
      const s = await waitForSnapshot(e, ns2, "snap-late", "Committing", (x) => x.status?.phase === "Committing");
      expect(s.status?.sourcePodName).toBe("bs-late-0");
    } finally {
      await removeContainer(cd, id);
    }
  });
  it("a BatchSandbox-owned snapshot (OpenSandbox's pause): snap-gen tag, Retain; deleted mid-commit → commit stopped, unpause Job, finalizer removed", async () => {
    const { e, cd } = env();
    const ns3 = "e2e-owned";
    await createNamespace(e.cluster, ns3);
    const bs = (await e.cluster.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns3,
      plural: "batchsandboxes",
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "BatchSandbox",
        metadata: { name: "bs-own", namespace: ns3 },
        spec: { replicas: 1, template: { spec: { containers: [{ name: "sandbox", image: "localhost/test/busybox:1" }] } } },
      },
    })) as { metadata: { uid: string; generation: number } };
    const id = await runContainer(cd, "bs-own-0", ns3, "sandbox");
    try {
      await labelPodUid(
        cd,
        id,
        (
          await createRunningPod(e.cluster, ns3, "bs-own-0", NODE, ["sandbox"], { "batch-sandbox.sandbox.opensandbox.io/name": "bs-own" }, { sandbox: id }, {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: "BatchSandbox",
            name: "bs-own",
            uid: bs.metadata.uid,
          })
        ).metadata?.uid,
      );
      const snap = snapshotObject(ns3, "snap-own", { sandboxName: "bs-own" });
      if (snap.metadata) {
        snap.metadata.ownerReferences = [
          plain({ apiVersion: `${GROUP}/${VERSION}`, kind: "BatchSandbox", name: "bs-own", uid: bs.metadata.uid, controller: true, blockOwnerDeletion: true }),
        ];
      }
      await createSnapshot(e.cluster, snap);
      const committing = await waitForSnapshot(e, ns3, "snap-own", "Committing", (x) => x.status?.phase === "Committing");
      expect(committing.status?.deletionPolicy).toBe("Retain");
      expect(committing.status?.containers?.[0]?.imageUri).toMatch(new RegExp(`/bs-own/sandbox:snap-gen${String(bs.metadata.generation)}$`));
      await waitForJob(e, ns3, "snap-own-commit");
      const commitPod = await waitForJobPod(e, ns3, "snap-own-commit");

      // Deleted while the commit is in flight: the commit Job is no longer wanted.
      await e.cluster.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns3, plural: SNAPSHOTS, name: "snap-own" });
      await waitForJobGone(e, ns3, "snap-own-commit");
      // The kubelet's part: the garbage collector asked for the commit pod's deletion; it is stopped.
      await waitFor("commit pod marked for deletion", async () => {
        try {
          const p = await e.cluster.core.readNamespacedPod({ namespace: ns3, name: commitPod.metadata?.name ?? "" });
          return p.metadata?.deletionTimestamp !== undefined;
        } catch (err) {
          if (isNotFound(err)) return true;
          throw err;
        }
      }, 60_000);
      await e.cluster.core
        .deleteNamespacedPod({ namespace: ns3, name: commitPod.metadata?.name ?? "", gracePeriodSeconds: 0 })
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });

      // Then an unpause Job on the node resumes the source containers (a killed committer may have left them frozen).
      const unpause = await waitForJob(e, ns3, "snap-own-unpause");
      expect(unpause.spec?.template.spec?.nodeName).toBe(NODE);
      expect(unpause.spec?.template.spec?.containers[0]?.args).toEqual(["unpause", "bs-own-0", ns3, "sandbox"]);
      const run = await runCommitter(e, unpause);
      expect(run.code, run.stderr).toBe(0);
      expect(await taskStatus(cd, id)).toBe("RUNNING");
      await finishJobPod(e, ns3, await waitForJobPod(e, ns3, "snap-own-unpause"), 0, run.result || "{}");
      await waitFor("snapshot snap-own finalized", async () => (await getSnapshot(e.cluster, ns3, "snap-own")) === undefined, 60_000);
      await waitForJobGone(e, ns3, "snap-own-unpause");
    } finally {
      await removeContainer(cd, id);
    }
  });
});
