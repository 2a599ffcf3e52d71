import { describe, expect, it } from "vitest";
import type { Job, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig } from "../../src/config/config.js";
import { planSyncLookups, sync } from "../../src/reconcile/sync.js";
import {
  CREATED,
  DIGEST_A,
  DIGEST_B,
  batchSandbox,
  cfg,
  job,
  jobPod,
  pod,
  registryHolds,
  sandboxPod,
  request,
  snapshot,
  t0,
  t1,
  withStatus,
} from "../support/fixtures.js";

const later = (seconds: number): Date => new Date(Date.parse(CREATED) + seconds * 1000);

function run(req: SyncRequest, now = t0, lookups = {}, c = cfg) {
  const res = sync(req, c, now, lookups);
  const v = validateSyncResponse(res);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return res;
}

function commitJobOf(children: Job[]): Job {
  const j = children.find((c) => c.metadata.name === "snap1-commit");
  if (!j) throw new Error("no commit Job");
  return j;
}

interface JobSpecShape {
  backoffLimit: number;
  activeDeadlineSeconds: number;
  ttlSecondsAfterFinished?: number;
  template: {
    spec: {
      nodeName: string;
      restartPolicy: string;
      tolerations?: object[];
      containers: {
        args: string[];
        command?: string[];
        env: { name: string; value: string }[];
        terminationMessagePolicy: string;
        volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
        securityContext: { privileged: boolean };
      }[];
      volumes: { name: string; hostPath?: { path: string }; emptyDir?: { sizeLimit: string }; secret?: { secretName: string } }[];
    };
  };
}
const specOf = (j: Job): JobSpecShape => j.spec as unknown as JobSpecShape;

const committingStatus = (extra: Partial<SandboxSnapshotStatus> = {}): SandboxSnapshotStatus => {
  const first = run(request(snapshot(), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] }));
  return { ...first.status, ...extra };
};

describe("Pending", () => {
  it("starts committing when the BatchSandbox's pod runs: status names pod, node and one image per container", () => {
    const res = run(request(snapshot(), { pods: [sandboxPod("sbx-0", { containers: ["sandbox", "sidecar"] })], batchSandboxes: [batchSandbox("sbx")] }));
    expect(res.status.phase).toBe("Committing");
    expect(res.status.sourcePodName).toBe("sbx-0");
    expect(res.status.sourceNodeName).toBe("node-a");
    expect(res.status.containers?.map((c) => c.containerName)).toEqual(["sandbox", "sidecar"]);
    expect(res.status.containers?.[0]?.imageUri).toMatch(/^registry\.example\.com\/snapshots\/sandboxes\/sbx\/sandbox:snap-[0-9a-f]{32}$/);
    expect(res.status.startTime).toBe("2026-11-29T10:00:05Z");
    expect(res.status.deletionPolicy).toBe("Delete");
    expect(res.children).toHaveLength(1);
    expect(res.resyncAfterSeconds).toBeGreaterThan(0);
  });

  it("builds the commit Job exactly as the committer interface says", () => {
    const c = loadConfig({
      SNAPSHOT_REGISTRY: "registry.example.com/snapshots",
      SNAPSHOT_PUSH_SECRET: "push-creds",
      COMMIT_JOB_PRIORITY_CLASS: "system-node-critical",
      COMMITTER_IMAGE_PULL_SECRETS: "pull-a,pull-b",
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_COMPRESSION: "zstd",
    });
    const tolerations = [{ key: "sandbox", operator: "Exists", effect: "NoSchedule" }];
    const res = run(
      request(snapshot({ podName: "p1" }), { pods: [pod("p1", { node: "node-b", tolerations })] }),
      t0,
      { pushSecret: "present" },
      c,
    );
    const j = commitJobOf(res.children);
    const spec = specOf(j);
    expect(j.metadata.labels).toMatchObject({
      "sandbox.opensandbox.io/sandbox-snapshot-name": "snap1",
      "sandbox.opensandbox.io/privileged-node-access": "true",
    });
    expect(spec.backoffLimit).toBe(0);
    expect(spec.activeDeadlineSeconds).toBe(600);
    expect(spec.ttlSecondsAfterFinished).toBeUndefined();
    const pspec = spec.template.spec;
    expect(pspec.nodeName).toBe("node-b");
    expect(pspec.restartPolicy).toBe("Never");
    expect(pspec.tolerations).toEqual(tolerations);
    const ctr = pspec.containers[0];
    if (!ctr) throw new Error("no container");
    expect(ctr.command).toBeUndefined();
    expect(ctr.args).toEqual(["p1", "sandboxes", `sandbox:registry.example.com/snapshots/sandboxes/p1/sandbox:${res.status.containers?.[0]?.imageUri?.split(":")[1] ?? ""}`]);
    expect(ctr.terminationMessagePolicy).toBe("FallbackToLogsOnError");
    expect(ctr.securityContext.privileged).toBe(true);
    const env = Object.fromEntries(ctr.env.map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      CONTAINERD_SOCKET: "/run/containerd/containerd.sock",
      CONTAINERD_NAMESPACE: "k8s.io",
      CONTAINERD_ROOT: "/var/lib/containerd",
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_COMPRESSION: "zstd",
      SNAPSHOT_MAX_FREEZE_SECONDS: "60",
      SNAPSHOT_SCRATCH_DIR: "/scratch",
      SNAPSHOT_SCRATCH_LIMIT_BYTES: String(10 * 1024 ** 3),
      SNAPSHOT_RESULT_PATH: "/dev/termination-log",
      SNAPSHOT_UID: "7d3f0c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
      SNAPSHOT_NAME: "snap1",
      SNAPSHOT_NAMESPACE: "sandboxes",
      DOCKER_CONFIG: "/var/run/secrets/snapshot-push",
    });
    const mounts = Object.fromEntries(ctr.volumeMounts.map((m) => [m.name, m]));
    expect(mounts["containerd-root"]).toEqual({ name: "containerd-root", mountPath: "/var/lib/containerd", readOnly: true });
    expect(mounts["containerd-socket"]?.mountPath).toBe("/run/containerd/containerd.sock");
    expect(mounts["push-secret"]?.readOnly).toBe(true);
    const vols = Object.fromEntries(pspec.volumes.map((v) => [v.name, v]));
    expect(vols.scratch?.emptyDir?.sizeLimit).toBe("10Gi");
    expect(vols["push-secret"]?.secret?.secretName).toBe("push-creds");
    expect(vols["containerd-root"]?.hostPath?.path).toBe("/var/lib/containerd");
    expect((j.spec as { template: { spec: Record<string, unknown> } }).template.spec).toMatchObject({
      priorityClassName: "system-node-critical",
      imagePullSecrets: [{ name: "pull-a" }, { name: "pull-b" }],
    });
  });

  it("captures only spec.containers when given", () => {
    const res = run(
      request(snapshot({ podName: "p1", containers: ["sidecar"] }), { pods: [pod("p1", { containers: ["sandbox", "sidecar"] })] }),
    );
    expect(res.status.containers?.map((c) => c.containerName)).toEqual(["sidecar"]);
    expect(specOf(commitJobOf(res.children)).template.spec.containers[0]?.args.slice(2)).toEqual([
      expect.stringMatching(/^sidecar:registry\.example\.com\/snapshots\/sandboxes\/p1\/sidecar:snap-/),
    ]);
  });

  it.each([
    ["both sources", { sandboxName: "a", podName: "b" }, "exactly one of spec.sandboxName, spec.podName or spec.sandboxRef"],
    ["no source", {}, "exactly one of spec.sandboxName, spec.podName or spec.sandboxRef"],
    ["duplicate containers", { podName: "p1", containers: ["a", "a"] }, "spec.containers lists \"a\" twice"],
  ])("fails fast on an invalid spec (%s) with a message naming the field", (_name, spec, message) => {
    const res = run(request(snapshot(spec), { pods: [pod("p1")] }));
    expect(res.status.phase).toBe("Failed");
    const failed = res.status.conditions?.find((c) => c.type === "Failed");
    expect(failed).toMatchObject({ status: "True", reason: "InvalidSpec" });
    expect(failed?.message).toContain(message);
    expect(res.children).toEqual([]);
  });

  it("fails a name over 55 characters, which would give invalid Job names", () => {
    const res = run(request(snapshot({ podName: "p1" }, { name: "x".repeat(56) }), { pods: [pod("p1")] }));
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.message).toContain("metadata.name must be at most 55");
  });

  it("fails when a container in spec.containers is not in the pod, naming the list index", () => {
    const res = run(request(snapshot({ podName: "p1", containers: ["sandbox", "nope"] }), { pods: [pod("p1")] }));
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")).toMatchObject({ reason: "ContainerNotFound" });
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.message).toContain('spec.containers[1]: container "nope"');
  });

  it("waits for a source that does not exist yet, saying why, and asks to be synced again", () => {
    const res = run(request(snapshot({ podName: "p1" })));
    expect(res.status.phase).toBe("Pending");
    expect(res.status.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "False", reason: "SourceNotFound" });
    expect(res.status.conditions?.find((c) => c.type === "Ready")?.message).toContain("Pod p1 (spec.podName) does not exist");
    expect(res.resyncAfterSeconds).toBe(10);
    expect(res.children).toEqual([]);
  });

  it("waits for a pod that is not Running yet", () => {
    const res = run(request(snapshot({ podName: "p1" }), { pods: [pod("p1", { phase: "Pending" })] }));
    expect(res.status.conditions?.find((c) => c.type === "Ready")?.reason).toBe("SourceNotRunning");
  });

  it("fails with the reason once the source wait deadline has passed", () => {
    const res = run(request(snapshot({ podName: "p1" })), later(301));
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")).toMatchObject({ reason: "SourceNotFound" });
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.message).toContain("SOURCE_WAIT_SECONDS");
    expect(res.status.completionTime).toBeDefined();
  });

  it("uses a pod found by the shell's direct look-up when the related objects miss it", () => {
    const res = run(request(snapshot()), t0, { source: { batchSandboxes: [batchSandbox("sbx", { allocPods: ["pool-7"] })], pods: [pod("pool-7")] } });
    expect(res.status.phase).toBe("Committing");
    expect(res.status.sourcePodName).toBe("pool-7");
  });

  it("plans a direct look-up only while no Running source is related", () => {
    expect(planSyncLookups(request(snapshot()), cfg).source).toBe(true);
    expect(planSyncLookups(request(snapshot(), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] }), cfg).source).toBe(false);
    const committing = withStatus(request(snapshot()), { phase: "Committing" });
    expect(planSyncLookups(committing, cfg)).toEqual({ source: false, pushSecret: undefined });
    const recorded = withStatus(request(snapshot(), { jobs: [job("snap1-commit", "running")] }), { phase: "Committing", sourcePodName: "sbx-0", sourceNodeName: "node-a" });
    expect(planSyncLookups(recorded, cfg)).toEqual({
      source: false,
      pushSecret: undefined,
      commitPods: { uid: "job-uid-snap1-commit", selector: "batch.kubernetes.io/controller-uid=job-uid-snap1-commit" },
      sourcePod: "sbx-0",
    });
  });

  it("mentions a failed direct look-up in the waiting message", () => {
    const res = run(request(snapshot()), t0, { sourceError: "API server answered HTTP 503" });
    expect(res.status.conditions?.find((c) => c.type === "Ready")?.message).toContain("direct look-up failed: API server answered HTTP 503");
  });

  describe("push Secret", () => {
    const withSecret = loadConfig({ SNAPSHOT_REGISTRY: "registry.example.com/snapshots", SNAPSHOT_PUSH_SECRET: "push-creds" });
    const req = request(snapshot({ podName: "p1" }), { pods: [pod("p1")] });

    it("fails with PushSecretMissing when the Secret does not exist in the namespace", () => {
      const res = run(req, t0, { pushSecret: "absent" }, withSecret);
      expect(res.status.phase).toBe("Failed");
      expect(res.status.conditions?.find((c) => c.type === "Failed")?.reason).toBe("PushSecretMissing");
      expect(res.status.conditions?.find((c) => c.type === "Failed")?.message).toContain("SNAPSHOT_PUSH_SECRET");
    });

    it("stays Pending and retries when the API cannot tell", () => {
      const res = run(req, t0, { pushSecretError: "GET Secret sandboxes/push-creds did not answer within 2000 ms" }, withSecret);
      expect(res.status.phase).toBe("Pending");
      expect(res.status.conditions?.find((c) => c.type === "Ready")?.reason).toBe("PushSecretUnverified");
      expect(res.resyncAfterSeconds).toBe(10);
    });

    it("proceeds when the Secret exists", () => {
      expect(run(req, t0, { pushSecret: "present" }, withSecret).status.phase).toBe("Committing");
    });
  });

  it("fails with a message naming the setting when the template gives an invalid repository", () => {
    const c = loadConfig({ SNAPSHOT_REGISTRY: "registry.example.com/snapshots", SNAPSHOT_REPOSITORY_TEMPLATE: "{registry}/{namespace}/{source}-{container}" });
    const snap = snapshot({ podName: "p1" });
    snap.metadata.namespace = "Bad..ns";
    const res = run(request(snap, { pods: [pod("p1")] }), t0, {}, c);
    expect(res.status.conditions?.find((c2) => c2.type === "Failed")).toMatchObject({ reason: "InvalidImageReference" });
    expect(res.status.conditions?.find((c2) => c2.type === "Failed")?.message).toContain("SNAPSHOT_REPOSITORY_TEMPLATE");
  });
});

describe("Committing", () => {
  it("keeps returning the commit Job while it runs, with the identical status (no re-sync loop)", () => {
    const status = committingStatus();
    const req = request(snapshot({ sandboxName: "sbx" }, { status }), {
      jobs: [job("snap1-commit", "running")],
      pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Running")],
      batchSandboxes: [batchSandbox("sbx")],
    });
    const first = run(req, t0);
    // The first sync that sees the Job records its UID (status memory); after that nothing changes.
    expect(first.status.commitJob).toEqual({ uid: "job-uid-snap1-commit" });
    expect(first.status.conditions?.find((c) => c.type === "Ready")?.message).toBe("commit pod snap1-commit-x7k2p is Running on node node-a");
    const again = run(withStatus(req, first.status), t1);
    const third = run(withStatus(req, again.status), new Date(t1.getTime() + 5000));
    expect(again.status).toEqual(first.status);
    expect(third.status).toEqual(first.status);
    expect(again.children.map((c) => c.metadata.name)).toEqual(["snap1-commit"]);
  });

  it("records digests from the commit pod's termination message once the registry backs them, keeping the finished Job until Succeed is recorded", () => {
    const status = committingStatus();
    const image = status.containers?.[0]?.imageUri ?? "";
    const message = JSON.stringify({ containers: [{ name: "sandbox", image, digest: DIGEST_A, sizeBytes: 12345 }], freezeMillis: 87 });
    const res = run(
      request(snapshot({ sandboxName: "sbx" }, { status }), {
        jobs: [job("snap1-commit", "succeeded")],
        pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Succeeded", message)],
        batchSandboxes: [batchSandbox("sbx")],
      }),
      t1,
      { images: registryHolds(status, { sandbox: DIGEST_A }) },
    );
    expect(res.status.phase).toBe("Succeed");
    // Pinned by digest: a later push to the tag never changes what a resume runs.
    expect(res.status.containers?.[0]).toMatchObject({ containerName: "sandbox", imageUri: `${image}@${DIGEST_A}`, imageDigest: DIGEST_A, sizeBytes: 12345 });
    expect(res.status.freezeMillis).toBe(87);
    expect(res.status.completionTime).toBe("2026-11-29T10:00:07Z");
    expect(res.status.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "True", reason: "Succeeded" });
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-commit"]);
    // The next sync carries the recorded Succeed: now the Job goes.
    const recorded = run(
      request(snapshot({ sandboxName: "sbx" }, { status: res.status }), {
        jobs: [job("snap1-commit", "succeeded")],
        pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Succeeded", message)],
      }),
      t1,
    );
    expect(recorded.status).toEqual(res.status);
    expect(recorded.children).toEqual([]);
  });

  it("gives the same answer to a stale parent that still says Committing after Succeed was written", () => {
    const status = committingStatus();
    const image = status.containers?.[0]?.imageUri ?? "";
    const message = JSON.stringify({ containers: [{ name: "sandbox", image, digest: DIGEST_A }] });
    const world = { jobs: [job("snap1-commit", "succeeded")], pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Succeeded", message)] };
    const images = { images: registryHolds(status, { sandbox: DIGEST_A }) };
    const first = run(request(snapshot({ sandboxName: "sbx" }, { status }), world), t0, images);
    const stale = run(request(snapshot({ sandboxName: "sbx" }, { status }), world), t1, images);
    expect(stale.status.phase).toBe("Succeed");
    expect(stale.children.map((c) => c.metadata.name)).toEqual(first.children.map((c) => c.metadata.name));
  });

  it("waits for the commit pod when the Job's completion arrives first", () => {
    const status = committingStatus();
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "succeeded")], pods: [sandboxPod("sbx-0")] }));
    expect(res.status.phase).toBe("Committing");
    expect(res.children).toHaveLength(1);
  });

  it.each([
    ["not JSON (log tail) and nothing of ours at the tag", "panic: something broke", "CommitResultMissing"],
    ["no digest for a container", JSON.stringify({ containers: [] }), "CommitResultInvalid"],
    ["an error result", JSON.stringify({ error: "push failed" }), "CommitFailed"],
  ])("fails when a succeeded Job's result is %s", (_n, message, reason) => {
    const status = committingStatus();
    const res = run(
      request(snapshot({ sandboxName: "sbx" }, { status }), {
        jobs: [job("snap1-commit", "succeeded")],
        pods: [jobPod("snap1-commit", "Succeeded", message)],
      }),
      t0,
      { images: registryHolds(status, {}) },
    );
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.reason).toBe(reason);
  });

  it("does not treat a Job without a terminal condition as failed, even with failed pods counted", () => {
    const status = committingStatus();
    const j = job("snap1-commit", "running");
    j.status = { failed: 1, conditions: [{ type: "FailureTarget", status: "True" }] };
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [j], pods: [sandboxPod("sbx-0")] }));
    expect(res.status.phase).toBe("Committing");
  });

  it("waits while a commit pod still runs after the Job is marked failed", () => {
    const status = committingStatus();
    const res = run(
      request(snapshot({ sandboxName: "sbx" }, { status }), {
        jobs: [job("snap1-commit", "failed", "DeadlineExceeded")],
        pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Running")],
      }),
    );
    expect(res.status.phase).toBe("Committing");
  });

  it("fails with the committer's error and returns an unpause Job for the same node and containers", () => {
    const status = committingStatus();
    const res = run(
      request(snapshot({ sandboxName: "sbx" }, { status }), {
        jobs: [job("snap1-commit", "failed")],
        pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Failed", JSON.stringify({ error: "registry.example.com: unauthorized" }))],
      }),
    );
    expect(res.status.phase).toBe("Failed");
    const failed = res.status.conditions?.find((c) => c.type === "Failed");
    expect(failed?.reason).toBe("CommitFailed");
    expect(failed?.message).toContain("registry.example.com: unauthorized");
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")?.status).toBe("Unknown");
    const unpause = res.children.find((c) => c.metadata.name === "snap1-unpause");
    expect(unpause).toBeDefined();
    const spec = specOf(unpause as Job);
    expect(spec.template.spec.nodeName).toBe("node-a");
    expect(spec.template.spec.containers[0]?.args).toEqual(["unpause", "sbx-0", "sandboxes", "sandbox"]);
    expect(spec.backoffLimit).toBe(0);
  });

  it("needs no unpause Job when the source pod is gone", () => {
    const status = committingStatus();
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "failed")] }), t0, { sourcePod: null });
    expect(res.status.phase).toBe("Failed");
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-commit"]);
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")).toMatchObject({ status: "True", reason: "SourceGone" });
  });

  it("needs no unpause Job when the source pod now runs on another node", () => {
    const status = committingStatus();
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "failed")] }), t0, {
      sourcePod: sandboxPod("sbx-0", { node: "node-z" }),
    });
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-commit"]);
  });
});

describe("Failed", () => {
  const failedStatus = (): SandboxSnapshotStatus => {
    const status = committingStatus();
    return run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "failed")], pods: [sandboxPod("sbx-0")] })).status;
  };

  it("keeps returning the unpause Job until it completes, with a stable status", () => {
    const status = failedStatus();
    const req = request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-unpause", "running")], pods: [sandboxPod("sbx-0")] });
    const a = run(req, t0);
    const b = run(withStatus(req, a.status), t1);
    expect(a.status).toEqual(status);
    expect(b.status).toEqual(a.status);
    expect(b.children.map((c) => c.metadata.name)).toEqual(["snap1-unpause"]);
  });

  it("records the resumed containers and stops returning the unpause Job once that is recorded", () => {
    const status = failedStatus();
    const world = { jobs: [job("snap1-unpause", "succeeded")], pods: [sandboxPod("sbx-0")] };
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), world));
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-unpause"]);
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")).toMatchObject({ status: "True", reason: "Unpaused" });
    expect(res.status.phase).toBe("Failed");
    const recorded = run(request(snapshot({ sandboxName: "sbx" }, { status: res.status }), world), t1);
    expect(recorded.children).toEqual([]);
    expect(recorded.status).toEqual(res.status);
  });

  it("drops the finished commit Job once Failed is recorded", () => {
    const status = failedStatus();
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "failed"), job("snap1-unpause", "running")], pods: [sandboxPod("sbx-0")] }));
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-unpause"]);
  });

  it("reports an unpause Job that hit its deadline", () => {
    const status = failedStatus();
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-unpause", "failed", "DeadlineExceeded")], pods: [sandboxPod("sbx-0")] }));
    expect(res.children.map((c) => c.metadata.name)).toEqual(["snap1-unpause"]);
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")).toMatchObject({ status: "False", reason: "UnpauseFailed" });
  });

  it("never changes once settled, whatever appears later", () => {
    const status = failedStatus();
    const settled = run(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-unpause", "succeeded")], pods: [sandboxPod("sbx-0")] })).status;
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status: settled }), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] }), t1);
    expect(res.status).toEqual(settled);
    expect(res.children).toEqual([]);
  });
});

describe("Succeed", () => {
  it("is terminal: nothing is returned and the status stays as it is", () => {
    const status: SandboxSnapshotStatus = {
      ...committingStatus(),
      phase: "Succeed",
      containers: [{ containerName: "sandbox", imageUri: "registry.example.com/snapshots/sbx-sandbox:snap-x", imageDigest: DIGEST_B }],
    };
    const res = run(request(snapshot({ sandboxName: "sbx" }, { status }), { pods: [sandboxPod("sbx-0")] }), t1);
    expect(res.status).toEqual(status);
    expect(res.children).toEqual([]);
    expect(res.resyncAfterSeconds).toBeUndefined();
  });
});

describe("fixpoint for every non-terminal phase", () => {
  const worlds: [string, SyncRequest][] = [
    ["Pending, waiting for the source", request(snapshot({ podName: "p1" }))],
    ["Pending, pod not Running", request(snapshot({ podName: "p1" }), { pods: [pod("p1", { phase: "Pending" })] })],
    ["Committing, Job absent", request(snapshot({ podName: "p1" }), { pods: [pod("p1")] })],
  ];
  it.each(worlds)("%s: a second sync over the same world returns the identical status", (_name, req) => {
    const first = run(req, t0);
    const second = run(withStatus(req, first.status), t1);
    const third = run(withStatus(req, second.status), new Date(t1.getTime() + 3000));
    expect(second.status).toEqual(first.status);
    expect(third.status).toEqual(first.status);
  });
});

describe("key styles", () => {
  it("gives the same answer for v1 (name) and v2 (namespace/name) keys", () => {
    const world = { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")], jobs: [job("snap1-commit", "running")] };
    const a = run(request(snapshot(), { ...world, style: "v1" }));
    const b = run(request(snapshot(), { ...world, style: "v2" }));
    expect(b).toEqual(a);
  });
});
