// Issue 18 (core half): the hooks believe only what the Job or the BatchSandbox controls, every wait
// has a bound, the commit Job's disappearance ends the commit, unpause decisions use the pod recorded
// in status, finalize answers `finalized: true` only over the stored status, Events come from the core.
import { describe, expect, it } from "vitest";
import type { Job, Pod, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { COMMIT_OVERRUN_SECONDS, FINALIZE_COMMIT_WAIT_SECONDS, JOB_WITHOUT_POD_SECONDS, RESULT_WAIT_SECONDS, TERMINATING_POD_SECONDS } from "../../src/reconcile/bounds.js";
import { customize } from "../../src/reconcile/customize.js";
import { decideFinalize, finalize, sameStatus } from "../../src/reconcile/finalize.js";
import { decideSync, sync, type SyncLookups } from "../../src/reconcile/sync.js";
import {
  DIGEST_A,
  DIGEST_B,
  JOB_CREATED,
  JOB_FINISHED,
  batchSandbox,
  cfg,
  forgedJobPod,
  job,
  jobPod,
  pod,
  request,
  sandboxPod,
  snapshot,
  t0,
  withStatus,
  registryHolds,
} from "../support/fixtures.js";

const at = (base: string, seconds: number): Date => new Date(Date.parse(base) + seconds * 1000);

function run(req: SyncRequest, now = t0, lookups: SyncLookups = {}) {
  const d = decideSync(req, cfg, now, lookups);
  const v = validateSyncResponse(d.response);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return d;
}

const cond = (s: SandboxSnapshotStatus, type: string) => s.conditions?.find((c) => c.type === type);
const names = (children: Job[]): string[] => children.map((c) => c.metadata.name ?? "");

/** The status a Pending sync wrote when it created the commit Job (and a later sync recorded its UID). */
function committing(opts: { recorded?: boolean; sourcePod?: Pod } = {}): SandboxSnapshotStatus {
  const first = run(request(snapshot(), { pods: [opts.sourcePod ?? sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] })).response.status;
  return opts.recorded === false ? first : { ...first, commitJob: { uid: "job-uid-snap1-commit" } };
}

function commitWorld(status: SandboxSnapshotStatus, jobs: Job[], pods: Pod[] = []): SyncRequest {
  return request(snapshot({ sandboxName: "sbx" }, { status }), { jobs, pods, batchSandboxes: [batchSandbox("sbx")] });
}

const result = (digest: string) => JSON.stringify({ containers: [{ name: "sandbox", image: "x", digest }] });

describe("only what the Job controls counts (case 1)", () => {
  it("ignores a forged pod with the Job's job-name label and a chosen result, and records the real pod's digest", () => {
    const status = committing();
    const d = run(commitWorld(status, [job("snap1-commit", "succeeded")]), at(JOB_FINISHED, 1), {
      commitPods: [forgedJobPod("snap1-commit", "Succeeded", result(DIGEST_B)), jobPod("snap1-commit", "Succeeded", result(DIGEST_A))],
      images: registryHolds(status, { sandbox: DIGEST_A }),
    });
    expect(d.response.status.phase).toBe("Succeed");
    expect(d.response.status.containers?.[0]?.imageDigest).toBe(DIGEST_A);
    expect(d.ignored.map((i) => i.name)).toEqual(["a-x"]);
  });

  it("never records the digest of a forged pod when the real pod is not seen; the wait for the result is bounded", () => {
    const status = committing();
    const world = commitWorld(status, [job("snap1-commit", "succeeded")], [forgedJobPod("snap1-commit", "Succeeded", result(DIGEST_B))]);
    const early = run(world, at(JOB_FINISHED, 5));
    expect(early.response.status.phase).toBe("Committing");
    expect(cond(early.response.status, "Ready")?.reason).toBe("CommitResultPending");
    // the registry has nothing of this snapshot's at the tag, so the lost result cannot be recovered
    const late = run(world, at(JOB_FINISHED, RESULT_WAIT_SECONDS + 1), { images: registryHolds(status, {}) });
    expect(late.response.status.phase).toBe("Failed");
    expect(cond(late.response.status, "Failed")?.reason).toBe("CommitResultMissing");
    expect(JSON.stringify(late.response.status)).not.toContain(DIGEST_B);
  });

  it("ignores a forged owner reference to the Job without the Job controller's controller-uid label", () => {
    const status = committing();
    const forged = forgedJobPod("snap1-commit", "Succeeded", result(DIGEST_B), { ownerUid: "job-uid-snap1-commit" });
    const d = run(commitWorld(status, [job("snap1-commit", "succeeded")], [forged]), at(JOB_FINISHED, 1));
    expect(d.response.status.phase).toBe("Committing");
    expect(d.ignored).toHaveLength(1);
  });

  it("a pod the Job controller adopted by its selector label, but running another image, is ignored", () => {
    const status = committing();
    const j = job("snap1-commit", "succeeded");
    const commit = sync(commitWorld(status, []), cfg, t0).children[0];
    if (j.spec && commit?.spec) j.spec.template = commit.spec.template;
    const tpl = (commit?.spec as { template: { spec: { containers: { image: string; args: string[] }[] } } }).template.spec.containers[0];
    const adopted = jobPod("snap1-commit", "Succeeded", result(DIGEST_B), { name: "a-adopted" });
    const real = jobPod("snap1-commit", "Succeeded", result(DIGEST_A));
    for (const p of [adopted, real]) if (p.spec?.containers?.[0]) p.spec.containers[0] = { name: "committer", image: tpl?.image ?? "", args: tpl?.args ?? [] };
    if (adopted.spec?.containers?.[0]) adopted.spec.containers[0].image = "busybox";
    const d = run(commitWorld(status, [j]), at(JOB_FINISHED, 1), { commitPods: [adopted, real], images: registryHolds(status, { sandbox: DIGEST_A }) });
    expect(d.response.status.containers?.[0]?.imageDigest).toBe(DIGEST_A);
    expect(d.ignored.map((i) => i.name)).toEqual(["a-adopted"]);
  });

  it("a planted Pending pod cannot keep a failed commit in Committing: Failed, and the unpause Job runs", () => {
    const status = committing();
    const d = run(commitWorld(status, [job("snap1-commit", "failed")], [forgedJobPod("snap1-commit", "Pending")]), t0, { sourcePod: sandboxPod("sbx-0") });
    expect(d.response.status.phase).toBe("Failed");
    expect(names(d.response.children)).toContain("snap1-unpause");
    expect(d.ignored.map((i) => i.name)).toEqual(["a-x"]);
  });

  it("a real commit pod still running after the Job failed is waited for", () => {
    const status = committing();
    const d = run(commitWorld(status, [job("snap1-commit", "failed")]), t0, { commitPods: [jobPod("snap1-commit", "Running")] });
    expect(d.response.status.phase).toBe("Committing");
    expect(cond(d.response.status, "Ready")?.reason).toBe("CommitPodStopping");
  });
});

describe("planted source (case 4)", () => {
  it("a Running pod with the BatchSandbox label that sorts first is ignored; the BatchSandbox's own pod is the source", () => {
    const planted = pod("aaa", { labels: { "batch-sandbox.sandbox.opensandbox.io/name": "sbx" } });
    const d = run(request(snapshot()), t0, { source: { batchSandboxes: [batchSandbox("sbx")], pods: [planted, sandboxPod("sbx-xyz"), sandboxPod("sbx-0")] } });
    expect(d.response.status.sourcePodName).toBe("sbx-xyz");
    expect(d.response.status.sourcePodUID).toBe("pod-uid-sbx-xyz");
    expect(d.ignored.map((i) => i.name)).toEqual(["aaa"]);
  });

  it("a planted pod named <sandbox>-0 is ignored too", () => {
    const d = run(request(snapshot(), { pods: [pod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] }));
    expect(d.response.status.phase).toBe("Pending");
    expect(d.ignored.map((i) => i.name)).toEqual(["sbx-0"]);
  });

  it("keeps OpenSandbox's order among trusted pods: alloc-status names first, as the BatchSandbox names them", () => {
    const d = run(request(snapshot(), { pods: [pod("pool-1"), sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx", { allocPods: ["pool-1"] })] }));
    expect(d.response.status.sourcePodName).toBe("pool-1");
    expect(d.ignored).toEqual([]);
  });

  it("relates pods by name only: customize has no label rule anyone could fill (case 8)", () => {
    for (const spec of [{ sandboxName: "sbx" }, { podName: "p1" }]) {
      const rules = customize({ parent: snapshot(spec) }, Array.from({ length: 100 }, (_, i) => `pool-${i}`)).relatedResources;
      expect(rules.filter((r) => r.labelSelector !== undefined)).toEqual([]);
      for (const r of rules) expect(r.names?.length ?? 0).toBeLessThanOrEqual(17);
    }
  });
});

describe("unpause from what status recorded (case 5)", () => {
  // The source was found only by the shell's direct look-up: the related objects never hold it.
  const status = (): SandboxSnapshotStatus => {
    const s = run(request(snapshot()), t0, { source: { batchSandboxes: [batchSandbox("sbx", { allocPods: ["pool-7"] })], pods: [pod("pool-7")] } }).response.status;
    return { ...s, commitJob: { uid: "job-uid-snap1-commit" } };
  };

  it("records the source pod's name, UID and node when the commit Job is created, and passes the UID to the committer", () => {
    const d = run(request(snapshot()), t0, { source: { batchSandboxes: [batchSandbox("sbx", { allocPods: ["pool-7"] })], pods: [pod("pool-7")] } });
    expect(d.response.status).toMatchObject({ sourcePodName: "pool-7", sourcePodUID: "pod-uid-pool-7", sourceNodeName: "node-a" });
    const env = (d.response.children[0]?.spec as { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } }).template.spec.containers[0]?.env;
    expect(env).toContainEqual({ name: "SNAPSHOT_POD_UID", value: "pod-uid-pool-7" });
  });

  it("a failed commit returns the unpause Job although the related objects do not hold the source", () => {
    const d = run(commitWorld(status(), [job("snap1-commit", "failed")]), t0, { sourcePod: pod("pool-7") });
    expect(names(d.response.children)).toContain("snap1-unpause");
    expect(cond(d.response.status, "ContainersResumed")?.status).toBe("Unknown");
  });

  it("also when the direct look-up could not be made: only a fresh read says the pod is gone", () => {
    const d = run(commitWorld(status(), [job("snap1-commit", "failed")]), t0, { sourcePodError: "API server answered HTTP 503" });
    expect(names(d.response.children)).toContain("snap1-unpause");
  });

  it("a pod re-created under the same name is not the frozen one: SourceGone", () => {
    const d = run(commitWorld(status(), [job("snap1-commit", "failed")]), t0, { sourcePod: pod("pool-7", { uid: "another" }) });
    expect(names(d.response.children)).not.toContain("snap1-unpause");
    expect(cond(d.response.status, "ContainersResumed")).toMatchObject({ status: "True", reason: "SourceGone" });
    expect(cond(d.response.status, "ContainersResumed")?.message).toContain("re-created");
  });

  it("a deleted Job on a Failed snapshot whose unpause is open still looks the pod up", () => {
    const failedStatus = run(commitWorld(status(), [job("snap1-commit", "failed")]), t0, { sourcePod: pod("pool-7") }).response.status;
    const d = run(request(snapshot({ sandboxName: "sbx" }, { status: failedStatus })), t0, { sourcePod: null });
    expect(cond(d.response.status, "ContainersResumed")).toMatchObject({ status: "True", reason: "SourceGone" });
  });
});

describe("every wait has a bound (cases 6, 11)", () => {
  it("a Job with no pod says so, with the reason the Job controller recorded, and fails after the bound without an unpause Job", () => {
    const status = committing();
    const noPod = job("snap1-commit", "running", undefined, { active: 0 });
    const events = { commitJobEvents: [{ reason: "FailedCreate", message: 'pods "snap1-commit-abcde" is forbidden: violates PodSecurity "baseline:latest"' }] };
    const early = run(commitWorld(status, [noPod]), at(JOB_CREATED, 30), events);
    expect(early.response.status.phase).toBe("Committing");
    expect(cond(early.response.status, "Ready")).toMatchObject({ reason: "CommitPodMissing" });
    expect(cond(early.response.status, "Ready")?.message).toContain("has no pod yet: FailedCreate: pods");
    expect(cond(early.response.status, "Ready")?.message).not.toContain("runs on node");
    expect(early.response.resyncAfterSeconds).toBeLessThanOrEqual(10);
    const late = run(commitWorld(status, [noPod]), at(JOB_CREATED, JOB_WITHOUT_POD_SECONDS), events);
    expect(late.response.status.phase).toBe("Failed");
    expect(cond(late.response.status, "Failed")).toMatchObject({ reason: "CommitPodNotCreated" });
    expect(cond(late.response.status, "Failed")?.message).toContain("violates PodSecurity");
    expect(cond(late.response.status, "ContainersResumed")).toMatchObject({ status: "True", reason: "NeverPaused" });
    expect(names(late.response.children)).toEqual(["snap1-commit"]);
  });

  it("a Complete Job whose pod was removed ends after the bound (not Committing forever)", () => {
    const status = committing();
    const world = commitWorld(status, [job("snap1-commit", "succeeded")]);
    expect(run(world, at(JOB_FINISHED, RESULT_WAIT_SECONDS - 1)).response.status.phase).toBe("Committing");
    const late = run(world, at(JOB_FINISHED, RESULT_WAIT_SECONDS), { sourcePod: sandboxPod("sbx-0"), images: registryHolds(status, {}) });
    expect(late.response.status.phase).toBe("Failed");
    expect(cond(late.response.status, "Failed")?.reason).toBe("CommitResultMissing");
    expect(names(late.response.children)).toEqual(["snap1-commit", "snap1-unpause"]);
  });

  it("a commit pod on a lost node (Running with a deletionTimestamp) is waited for only until the bound", () => {
    const status = committing();
    const deleted = "2026-11-29T10:01:00Z";
    const stuck = jobPod("snap1-commit", "Running", undefined, { deletionTimestamp: deleted });
    const world = commitWorld(status, [job("snap1-commit", "failed", "DeadlineExceeded")]);
    expect(run(world, at(deleted, TERMINATING_POD_SECONDS - 1), { commitPods: [stuck] }).response.status.phase).toBe("Committing");
    const late = run(world, at(deleted, TERMINATING_POD_SECONDS), { commitPods: [stuck], sourcePod: sandboxPod("sbx-0") });
    expect(late.response.status.phase).toBe("Failed");
    expect(names(late.response.children)).toContain("snap1-unpause");
  });

  it("a Job stuck at FailureTarget (its pod never confirmed dead) fails once its pod is past the bound", () => {
    const status = committing();
    const deleted = "2026-11-29T10:01:00Z";
    const j = job("snap1-commit", "running");
    j.status = { active: 1, conditions: [{ type: "FailureTarget", status: "True", reason: "DeadlineExceeded", lastTransitionTime: deleted }] };
    const stuck = jobPod("snap1-commit", "Running", undefined, { deletionTimestamp: deleted });
    expect(run(commitWorld(status, [j]), at(deleted, 10), { commitPods: [stuck] }).response.status.phase).toBe("Committing");
    const late = run(commitWorld(status, [j]), at(deleted, TERMINATING_POD_SECONDS), { commitPods: [stuck] });
    expect(late.response.status.phase).toBe("Failed");
    expect(cond(late.response.status, "Failed")?.message).toContain("DeadlineExceeded");
  });

  it("a Job that never settles fails after its deadline plus the overrun", () => {
    const status = committing();
    const world = commitWorld(status, [job("snap1-commit", "running")]);
    const limit = cfg.commitJobDeadlineSeconds + COMMIT_OVERRUN_SECONDS;
    expect(run(world, at(JOB_CREATED, limit - 1), { commitPods: [jobPod("snap1-commit", "Running")] }).response.status.phase).toBe("Committing");
    const late = run(world, at(JOB_CREATED, limit), { commitPods: [jobPod("snap1-commit", "Running")] });
    expect(cond(late.response.status, "Failed")?.reason).toBe("CommitTimedOut");
  });
});

describe("the commit Job deleted after it was observed (case 9)", () => {
  it("ends the commit as Failed and never returns the commit Job again (no second freeze)", () => {
    const status = committing();
    const d = run(commitWorld(status, []), t0, { sourcePod: sandboxPod("sbx-0") });
    expect(d.response.status.phase).toBe("Failed");
    expect(cond(d.response.status, "Failed")?.reason).toBe("CommitJobDeleted");
    expect(names(d.response.children)).toEqual(["snap1-unpause"]);
    // Metacontroller writes Failed; the next sync (Job still absent) stays there and unpauses.
    const next = run(commitWorld(d.response.status, []), t0, { sourcePod: sandboxPod("sbx-0") });
    expect(next.response.status).toEqual(d.response.status);
    expect(names(next.response.children)).toEqual(["snap1-unpause"]);
  });

  it("a Job being deleted, or one with another UID, counts as deleted too", () => {
    const status = committing();
    for (const j of [job("snap1-commit", "running", undefined, { deletionTimestamp: "2026-11-29T10:00:03Z" }), job("snap1-commit", "running", undefined, { uid: "other" })]) {
      const d = run(commitWorld(status, [j]), t0, { sourcePod: null });
      expect(d.response.status.phase).toBe("Failed");
      expect(names(d.response.children)).toEqual([]);
    }
  });

  it("waits for the deleted Job's pods to stop before anything unpauses", () => {
    const status = committing();
    const d = run(commitWorld(status, []), t0, { commitPods: [jobPod("snap1-commit", "Running", undefined, { deletionTimestamp: "2026-11-29T10:00:04Z" })] });
    expect(d.response.status.phase).toBe("Committing");
    expect(d.response.children).toEqual([]);
    expect(cond(d.response.status, "Ready")?.reason).toBe("CommitJobDeleted");
  });

  it("records the Job's UID the first time it sees the Job; before that, an absent Job is (re-)created", () => {
    const status = committing({ recorded: false });
    expect(status.commitJob).toBeUndefined();
    expect(names(run(commitWorld(status, [])).response.children)).toEqual(["snap1-commit"]);
    expect(run(commitWorld(status, [job("snap1-commit", "running")])).response.status.commitJob).toEqual({ uid: "job-uid-snap1-commit" });
  });
});

describe("Events are decided in the core", () => {
  it("a failed commit whose source is gone emits Failed and ContainersResumed, once", () => {
    const status = committing();
    const d = run(commitWorld(status, [job("snap1-commit", "failed")]), t0, { sourcePod: null });
    expect(d.events.map((e) => [e.transition, e.reason])).toEqual([
      ["failed", "CommitFailed"],
      ["resumed-True", "SourceGone"],
    ]);
    expect(run(commitWorld(d.response.status, [job("snap1-commit", "failed")]), t0, { sourcePod: null }).events).toEqual([]);
  });
});

describe("finalize", () => {
  const deleting = (status: SandboxSnapshotStatus, world: Parameters<typeof request>[1] = {}, deletedAt = "2026-11-29T10:00:04Z"): SyncRequest => ({
    ...request(snapshot({ sandboxName: "sbx" }, { status, deleting: deletedAt }), world),
    finalizing: true,
  });

  it("answers finalized: true only in a call whose status equals the stored one (case 10)", () => {
    const stored: SandboxSnapshotStatus = { phase: "Succeed", deletionPolicy: "Delete", containers: [{ containerName: "sandbox", imageUri: "r/x:1", imageDigest: DIGEST_A }] };
    const first = finalize(deleting(stored), cfg, t0, { cleanup: { state: "Done", deletedDigests: [DIGEST_A] }, finished: true });
    expect(first.finalized).toBe(false);
    expect(first.status.cleanup?.state).toBe("Done");
    expect(first.resyncAfterSeconds).toBe(1);
    const second = finalize(deleting(first.status), cfg, t0, { cleanup: first.status.cleanup, finished: true });
    expect(second.status).toEqual(first.status);
    expect(second.finalized).toBe(true);
    // Metacontroller compares observedGeneration too: it sets it to metadata.generation.
    expect(sameStatus({ ...first.status, observedGeneration: 3 }, { ...first.status, observedGeneration: 2 })).toBe(false);
  });

  it("the generation the deletion bumped is written before finalizing, even when nothing else changes", () => {
    // As the last sync stored it: observedGeneration 1. Marking the object deleted made it generation 2.
    const stored: SandboxSnapshotStatus = { phase: "Failed", deletionPolicy: "Delete", observedGeneration: 1, conditions: [{ type: "ContainersResumed", status: "True", reason: "Unpaused", message: "resumed", lastTransitionTime: "2026-11-29T10:00:03Z" }] };
    const req = deleting(stored);
    req.parent.metadata.generation = 2;
    const first = finalize(req, cfg, t0);
    expect(first.finalized).toBe(false);
    expect(first.status).toEqual({ ...stored, observedGeneration: 2 });
    const second = finalize({ ...req, parent: { ...req.parent, status: first.status } }, cfg, t0);
    expect(second.finalized).toBe(true);
    expect(second.status).toEqual(first.status);
  });

  it("an in-flight commit is waited for until the bound after the deletion, then the unpause Job runs", () => {
    const status = committing();
    const world = { jobs: [] as Job[] };
    const running = jobPod("snap1-commit", "Running");
    const soon = decideFinalize(deleting(status, world), cfg, at("2026-11-29T10:00:04Z", 10), undefined, { commitPods: [running] });
    expect(soon.response.finalized).toBe(false);
    expect(cond(soon.response.status, "ContainersResumed")).toMatchObject({ status: "Unknown", reason: "CommitStopping" });
    expect(soon.response.children).toEqual([]);
    const late = decideFinalize(deleting(status, world), cfg, at("2026-11-29T10:00:04Z", FINALIZE_COMMIT_WAIT_SECONDS), undefined, {
      commitPods: [running],
      sourcePod: sandboxPod("sbx-0"),
    });
    expect(names(late.response.children)).toEqual(["snap1-unpause"]);
  });

  it("a forged commit pod does not hold finalize up, and a fresh read of the source decides the unpause", () => {
    const status = committing();
    const d = decideFinalize(deleting(status, { pods: [forgedJobPod("snap1-commit", "Pending")] }), cfg, t0, undefined, { sourcePod: null });
    expect(cond(d.response.status, "ContainersResumed")?.reason).toBe("SourceGone");
    expect(d.ignored.map((i) => i.name)).toEqual(["a-x"]);
    // The status changed in this call: finalized only on the next one.
    expect(d.response.finalized).toBe(false);
    expect(finalize(deleting(d.response.status), cfg, t0, undefined, { sourcePod: null }).finalized).toBe(true);
  });
});

describe("fixpoint with the new status memory", () => {
  it.each<[string, Job[], SyncLookups]>([
    ["Job without pod", [job("snap1-commit", "running", undefined, { active: 0 })], {}],
    ["Job running", [job("snap1-commit", "running")], { commitPods: [jobPod("snap1-commit", "Running")] }],
    ["Job complete, pod not seen yet", [job("snap1-commit", "succeeded")], {}],
  ])("%s: repeated syncs return the identical status", (_n, jobs, lookups) => {
    const status = committing({ recorded: false });
    const req = commitWorld(status, jobs);
    const a = sync(req, cfg, at(JOB_CREATED, 4), lookups);
    const b = sync(withStatus(req, a.status), cfg, at(JOB_CREATED, 6), lookups);
    const c = sync(withStatus(req, b.status), cfg, at(JOB_CREATED, 8), lookups);
    expect(b.status).toEqual(a.status);
    expect(c.status).toEqual(a.status);
  });
});

