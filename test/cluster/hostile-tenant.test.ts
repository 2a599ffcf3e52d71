// A hostile namespace user on a real API server (issue 18): "mallory" holds a namespace editor role —
// create, change and delete pods and Jobs, but no write on pods/status or sandboxsnapshots/status —
// and plants look-alike pods while a snapshot commits: pods labelled as the commit Job's (one left
// Pending, one "completed" with a forged result and digest). The snapshot still ends with the real
// committer's digest. (A pod carrying the Job's selector label, controller-uid, would be adopted by
// the Job controller itself and count towards the Job's completion: that one is stopped by the
// admission policy in deploy/components/admission, see test/cluster/admission.test.ts and
// docs/security.md.) Then mallory
// deletes a running commit Job: the commit ends as Failed (CommitJobDeleted), the Job is never
// created a second time (no second freeze), and the unpause Job runs for the recorded source pod.
// The kubelet's part (pod status) is played by the test as admin, as in the other cluster tests.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { V1Pod } from "@kubernetes/client-node";
import { missingComponents } from "../support/components.js";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import {
  commitEnv,
  GROUP,
  SNAPSHOTS,
  createNamespace,
  createNode,
  createRunningPod,
  createSnapshot,
  finishJobPod,
  getSnapshot,
  isNotFound,
  plain,
  runCommitter,
  snapshotObject,
  startE2E,
  waitForJob,
  waitForJobPod,
  waitForSnapshot,
  type E2E,
} from "../support/cluster-e2e.js";
import { labelPodUid, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingClusterComponents() ?? missingComponents(["containerd", "runc", "ctr", "docker-registry"]);
const NODE = "node-a";
const NS = "e2e-hostile";
const MALLORY = "mallory";
const FORGED_DIGEST = `sha256:${"f".repeat(64)}`;

describe.skipIf(missing)("a hostile namespace editor cannot change a snapshot's outcome (real API server, Metacontroller, committer)", () => {
  let e: E2E | undefined;
  let cd: Containerd | undefined;
  let reg: TestRegistry | undefined;
  let containerId = "";
  const env = (): { e: E2E; cd: Containerd; reg: TestRegistry } => {
    if (!e || !cd || !reg) throw new Error("environment not started");
    return { e, cd, reg };
  };

  /** kubectl as mallory (impersonated by the admin), without blocking the in-process hook server. */
  const asMallory = async (args: string[], input?: string) => env().e.cluster.kubectlAsync([...args, `--as=${MALLORY}`], input !== undefined ? { input } : {});

  beforeAll(async () => {
    cd = await startContainerd();
    reg = await startRegistry();
    e = await startE2E({
      env: commitEnv(cd, reg),
    });
    await createNode(e.cluster, NODE);
    await createNamespace(e.cluster, NS);
    // A namespace editor: everything on pods and Jobs, read on snapshots — no status subresources.
    await e.cluster.apply([
      plain({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "sandbox-editor", namespace: NS },
        rules: [
          { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch", "create", "update", "patch", "delete"] },
          { apiGroups: ["batch"], resources: ["jobs"], verbs: ["get", "list", "watch", "create", "update", "patch", "delete"] },
          { apiGroups: [GROUP], resources: [SNAPSHOTS], verbs: ["get", "list", "watch", "create", "delete"] },
        ],
      }),
      plain({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "mallory-edits", namespace: NS },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "sandbox-editor" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: MALLORY }],
      }),
    ]);
    // The container carries its pod's UID label, as the kubelet's would (the committer checks SNAPSHOT_POD_UID).
    containerId = await runContainer(cd, "sbx", NS, "main");
    await labelPodUid(cd, containerId, (await createRunningPod(e.cluster, NS, "sbx", NODE, ["main"], {}, { main: containerId })).metadata?.uid);
  }, 600_000);

  afterAll(async () => {
    await e?.stop();
    if (cd && containerId) await removeContainer(cd, containerId).catch(() => undefined);
    await reg?.close();
    await cd?.stop();
  });

  const plant = async (name: string, labels: Record<string, string>): Promise<void> => {
    const pod = { apiVersion: "v1", kind: "Pod", metadata: { name, namespace: NS, labels }, spec: { nodeName: NODE, containers: [{ name: "committer", image: "localhost/test/busybox:1" }] } };
    const r = await asMallory(["create", "-n", NS, "-f", "-"], JSON.stringify(pod));
    expect(r.status, r.stderr).toBe(0);
  };

  it("mallory holds the editor role: may create pods, may not write pod or snapshot status", async () => {
    expect((await asMallory(["auth", "can-i", "create", "pods", "-n", NS])).stdout.trim()).toBe("yes");
    expect((await asMallory(["auth", "can-i", "update", "pods", "--subresource=status", "-n", NS])).stdout.trim()).toBe("no");
    expect((await asMallory(["auth", "can-i", "patch", `${SNAPSHOTS}.${GROUP}`, "--subresource=status", "-n", NS])).stdout.trim()).toBe("no");
    expect((await asMallory(["auth", "can-i", "delete", "jobs", "-n", NS])).stdout.trim()).toBe("yes");
  });

  it("planted look-alike commit pods change neither the outcome nor the digest", async () => {
    const { e } = env();
    await createSnapshot(e.cluster, snapshotObject(NS, "snap-h", { podName: "sbx" }));
    const job = await waitForJob(e, NS, "snap-h-commit");
    const realPod = await waitForJobPod(e, NS, "snap-h-commit");

    // Mallory plants pods that claim to be the Job's pods (its job-name labels, names sorting first).
    const jobLabels = { "job-name": "snap-h-commit", "batch.kubernetes.io/job-name": "snap-h-commit" };
    await plant("a-x", jobLabels);
    await plant("a-pending", jobLabels);
    // The kubelet runs mallory's container: it "completes" with a forged committer result.
    const forged = JSON.stringify({ containers: [{ name: "main", image: "evil", digest: FORGED_DIGEST }], freezeMillis: 1 });
    await finishJobPod(e, NS, await e.cluster.core.readNamespacedPod({ namespace: NS, name: "a-x" }), 0, forged);
    // Mallory cannot write a pod's status herself.
    const denied = await asMallory(["patch", "pod", "a-pending", "-n", NS, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { phase: "Succeeded" } })]);
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toMatch(/forbidden/i);

    // The real commit runs on the node and finishes.
    const run = await runCommitter(e, job);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.result) as { containers: { name: string; digest: string }[] };
    await finishJobPod(e, NS, realPod, 0, run.result);

    const done = await waitForSnapshot(e, NS, "snap-h", "Succeed", (s) => s.status?.phase === "Succeed" || s.status?.phase === "Failed");
    expect(done.status?.phase).toBe("Succeed");
    expect(done.status?.containers?.[0]?.imageDigest).toBe(result.containers[0]?.digest);
    expect(JSON.stringify(done.status)).not.toContain(FORGED_DIGEST);
    expect(await taskStatus(env().cd, containerId)).toBe("RUNNING");

    // The planted pods are not even read: nothing relates pods by label any more, and the direct
    // look-up lists only the Job's own selector.
    expect(e.hookLog.some((l) => l.includes(FORGED_DIGEST))).toBe(false);
  });

  it("deleting a running commit Job ends the commit as Failed: never a second Job (no second freeze), the recorded pod is unpaused", async () => {
    const { e } = env();
    await createSnapshot(e.cluster, snapshotObject(NS, "snap-d", { podName: "sbx" }));
    const job = await waitForJob(e, NS, "snap-d-commit");
    const uid = job.metadata?.uid ?? "";
    const commitPod = await waitForJobPod(e, NS, "snap-d-commit");
    // The controller has recorded the Job it observed before mallory acts.
    await waitForSnapshot(e, NS, "snap-d", "the commit Job's UID recorded", (s) => (s.status as { commitJob?: { uid?: string } } | undefined)?.commitJob?.uid === uid);

    const del = await asMallory(["delete", "job", "snap-d-commit", "-n", NS, "--wait=false"]);
    expect(del.status, del.stderr).toBe(0);
    // The kubelet's part: the garbage collector asked for the commit pod's deletion; it is stopped.
    await waitFor("commit pod marked for deletion", async () => {
      try {
        const p: V1Pod = await e.cluster.core.readNamespacedPod({ namespace: NS, name: commitPod.metadata?.name ?? "" });
        return p.metadata?.deletionTimestamp !== undefined;
      } catch (err) {
        if (isNotFound(err)) return true;
        throw err;
      }
    }, 60_000);
    await e.cluster.core.deleteNamespacedPod({ namespace: NS, name: commitPod.metadata?.name ?? "", gracePeriodSeconds: 0 }).catch((err: unknown) => {
      if (!isNotFound(err)) throw err;
    });

    const failed = await waitForSnapshot(e, NS, "snap-d", "Failed", (s) => s.status?.phase === "Failed");
    expect(failed.status?.conditions?.find((c) => c.type === "Failed")?.reason).toBe("CommitJobDeleted");
    const unpause = await waitForJob(e, NS, "snap-d-unpause");
    expect(unpause.spec?.template.spec?.containers[0]?.args).toEqual(["unpause", "sbx", NS, "main"]);
    // For a while: no commit Job is created again.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      const jobs = await e.cluster.batch.listNamespacedJob({ namespace: NS, labelSelector: "sandbox.opensandbox.io/sandbox-snapshot-name=snap-d" });
      expect(jobs.items.map((j) => j.metadata?.name), "commit Job re-created after its deletion").not.toContain("snap-d-commit");
    }
    const run = await runCommitter(e, unpause);
    expect(run.code, run.stderr).toBe(0);
    await finishJobPod(e, NS, await waitForJobPod(e, NS, "snap-d-unpause"), 0, run.result || "{}");
    await waitForSnapshot(e, NS, "snap-d", "ContainersResumed", (s) => s.status?.conditions?.some((c) => c.type === "ContainersResumed" && c.status === "True") === true);
    expect((await getSnapshot(e.cluster, NS, "snap-d"))?.status?.phase).toBe("Failed");
  });
});
