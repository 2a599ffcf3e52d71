// The registry as witness: what a namespace user can write (a pod's termination message, a POST to
// /finalize) never decides which digest is recorded or what is deleted. Pure core and shells with
// fakes here; the real registry in test/integration/registry-witness.test.ts.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { SandboxSnapshot, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig } from "../../src/config/config.js";
import { witnessProblem } from "../../src/reconcile/cleanup.js";
import { planImageChecks, VERIFY_DEADLINE_SECONDS, type ImageCheckResults } from "../../src/reconcile/image-check.js";
import { sync, type SyncLookups } from "../../src/reconcile/sync.js";
import { createCleanupRunner, type CleanupRegistry, type SnapshotWitness } from "../../src/server/cleanup-runner.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { RegistryError } from "../../src/registry/errors.js";
import { DIGEST_A, DIGEST_B, UID, batchSandbox, cfg, job, jobPod, pod, registryHolds, sandboxPod, request, snapshot, t0, t1, withStatus } from "../support/fixtures.js";
import { LogCapture } from "../support/log-capture.js";

const world = { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] };
const committing = (): SandboxSnapshotStatus => sync(request(snapshot(), world), cfg, t0).status;
const imageOf = (s: SandboxSnapshotStatus): string => s.containers?.[0]?.imageUri ?? "";

/** A finished commit whose pod says `message`. */
function finished(status: SandboxSnapshotStatus, message: string | undefined, completedAt?: string): SyncRequest {
  const j = job("snap1-commit", "succeeded");
  if (completedAt !== undefined && j.status) j.status.completionTime = completedAt;
  return request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [j], pods: [sandboxPod("sbx-0"), jobPod("snap1-commit", "Succeeded", message)] });
}

function run(req: SyncRequest, now: Date, lookups: SyncLookups) {
  const res = sync(req, cfg, now, lookups);
  const v = validateSyncResponse(res);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return res;
}

const claim = (status: SandboxSnapshotStatus, digest: string): string =>
  JSON.stringify({ containers: [{ name: "sandbox", image: imageOf(status), digest, sizeBytes: 10 }], freezeMillis: 9 });

describe("a finished commit is recorded only as the registry shows it", () => {
  it("plans a read of each container's tag and of the claimed digest", () => {
    const status = committing();
    const plan = planImageChecks(finished(status, claim(status, DIGEST_A)), cfg, t1);
    expect(plan).toEqual({
      purpose: "commit",
      checks: [{ containerName: "sandbox", imageUri: imageOf(status), registry: "registry.example.com", repository: "snapshots/sandboxes/sbx/sandbox", tag: imageOf(status).split(":").pop(), digest: DIGEST_A }],
    });
    // Nothing to read while the commit runs, or for an error result.
    expect(planImageChecks(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "running")] }), cfg, t1)).toBeUndefined();
    expect(planImageChecks(finished(status, JSON.stringify({ error: "x" })), cfg, t1)).toBeUndefined();
  });

  it("refuses a forged digest: Failed, with a reason and a message naming the digest", () => {
    const status = committing();
    // The pod claims DIGEST_B; the registry has DIGEST_A at the tag, and DIGEST_B nowhere.
    const images: ImageCheckResults = {
      purpose: "commit",
      results: [{ containerName: "sandbox", atTag: { outcome: "found", digest: DIGEST_A, snapshotUid: UID }, atDigest: { outcome: "not-found" } }],
    };
    const res = run(finished(status, claim(status, DIGEST_B)), t1, { images });
    expect(res.status.phase).toBe("Failed");
    const failed = res.status.conditions?.find((c) => c.type === "Failed");
    expect(failed?.reason).toBe("CommitResultUnverified");
    expect(failed?.message).toContain(DIGEST_B);
    expect(res.status.containers?.[0]?.imageDigest).toBeUndefined();
  });

  it("refuses a claimed manifest that exists but does not carry this snapshot's UID", () => {
    const status = committing();
    const res = run(finished(status, claim(status, DIGEST_A)), t1, { images: registryHolds(status, { sandbox: DIGEST_A }, { uid: "another-snapshot" }) });
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.reason).toBe("CommitResultUnverified");
  });

  it("accepts the claim when the tag moved on but the claimed manifest is ours", () => {
    const status = committing();
    const images: ImageCheckResults = {
      purpose: "commit",
      results: [{ containerName: "sandbox", atTag: { outcome: "found", digest: DIGEST_B, snapshotUid: "later" }, atDigest: { outcome: "found", digest: DIGEST_A, snapshotUid: UID } }],
    };
    const res = run(finished(status, claim(status, DIGEST_A)), t1, { images });
    expect(res.status.phase).toBe("Succeed");
    expect(res.status.containers?.[0]?.imageUri).toBe(`${imageOf(status)}@${DIGEST_A}`);
  });

  it.each([
    ["lost (no termination message)", undefined],
    ["cut at the 4096-byte limit", `{"containers":[{"name":"sandbox","image":"${"r".repeat(4000)}`],
  ])("recovers a result that was %s from the manifest at the tag, when it carries this snapshot's UID", (_n, message) => {
    const status = committing();
    const res = run(finished(status, message), t1, { images: registryHolds(status, { sandbox: DIGEST_A }, { sizeBytes: 77 }) });
    expect(res.status.phase).toBe("Succeed");
    expect(res.status.containers?.[0]).toMatchObject({ imageDigest: DIGEST_A, imageUri: `${imageOf(status)}@${DIGEST_A}`, sizeBytes: 77 });
    expect(res.status.conditions?.find((c) => c.type === "Ready")?.message).toContain("recovered from the registry");
  });

  it("fails a lost result when the tag holds another snapshot's manifest (never adopts it)", () => {
    const status = committing();
    const res = run(finished(status, undefined), t1, { images: registryHolds(status, { sandbox: DIGEST_A }, { uid: "other" }) });
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.reason).toBe("CommitResultMissing");
  });

  it("keeps Committing through a registry outage, with a condition, a retry and the same status each time", () => {
    const status = committing();
    const down: ImageCheckResults = { purpose: "commit", results: [{ containerName: "sandbox", atTag: { outcome: "error", message: "registry manifest-get registry.example.com/x: connection refused after 2 attempts" } }] };
    const req = finished(status, claim(status, DIGEST_A), "2026-11-29T10:00:06Z");
    const first = run(req, t1, { images: down });
    expect(first.status.phase).toBe("Committing");
    expect(first.status.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "False", reason: "RegistryUnavailable" });
    expect(first.resyncAfterSeconds).toBe(10);
    expect(first.children.map((c) => c.metadata.name)).toEqual(["snap1-commit"]);
    const again = run(withStatus(req, first.status), new Date(t1.getTime() + 10_000), { images: down });
    expect(again.status).toEqual(first.status);
    // Once the registry answers, the commit is recorded.
    const back = run(withStatus(req, first.status), new Date(t1.getTime() + 20_000), { images: registryHolds(status, { sandbox: DIGEST_A }) });
    expect(back.status.phase).toBe("Succeed");
  });

  it("gives up on an outage that outlasts its bound after the Job finished", () => {
    const status = committing();
    const down: ImageCheckResults = { purpose: "commit", results: [{ containerName: "sandbox", atTag: { outcome: "error", message: "timeout" } }] };
    const late = new Date(Date.parse("2026-11-29T10:00:06Z") + (VERIFY_DEADLINE_SECONDS + 1) * 1000);
    const res = run(finished(status, claim(status, DIGEST_A), "2026-11-29T10:00:06Z"), late, { images: down });
    expect(res.status.phase).toBe("Failed");
    expect(res.status.conditions?.find((c) => c.type === "Failed")?.reason).toBe("ImageVerificationTimedOut");
  });

  it("does not record anything without a registry answer (no verifier)", () => {
    const status = committing();
    const res = run(finished(status, claim(status, DIGEST_A)), t1, {});
    expect(res.status.phase).toBe("Committing");
    expect(res.status.containers?.[0]?.imageDigest).toBeUndefined();
  });
});

describe("ImageAvailable: a Succeed snapshot's images are checked again", () => {
  const succeed = (): SandboxSnapshotStatus => {
    const status = committing();
    return run(finished(status, claim(status, DIGEST_A)), t0, { images: registryHolds(status, { sandbox: DIGEST_A }) }).status;
  };
  const day = (n: number): Date => new Date(t0.getTime() + n * 86_400_000);
  const succeedReq = (status: SandboxSnapshotStatus): SyncRequest => request(snapshot({ sandboxName: "sbx" }, { status }));
  const gone: ImageCheckResults = { purpose: "recheck", results: [{ containerName: "sandbox", atDigest: { outcome: "not-found" } }] };
  const there: ImageCheckResults = { purpose: "recheck", results: [{ containerName: "sandbox", atDigest: { outcome: "found", digest: DIGEST_A, snapshotUid: UID } }] };

  it("starts True with the next check a day later, and asks to be called then", () => {
    const s = succeed();
    expect(s.conditions?.find((c) => c.type === "ImageAvailable")).toMatchObject({ status: "True", reason: "Verified" });
    expect(s.imageCheck?.nextCheckTime).toBe("2026-11-30T10:00:05Z");
    const idle = run(succeedReq(s), t1, {});
    expect(idle.status).toEqual(s);
    expect(idle.resyncAfterSeconds).toBe(86_398);
    expect(planImageChecks(succeedReq(s), cfg, t1)).toBeUndefined();
    expect(planImageChecks(succeedReq(s), cfg, day(1))).toMatchObject({ purpose: "recheck", checks: [{ digest: DIGEST_A, tag: undefined }] });
  });

  it("flips to False when the manifest is gone, and changes only when availability does", () => {
    const s = succeed();
    const lost = run(succeedReq(s), day(1), { images: gone });
    const cond = lost.status.conditions?.find((c) => c.type === "ImageAvailable");
    expect(cond).toMatchObject({ status: "False", reason: "ManifestNotFound", lastTransitionTime: "2026-11-30T10:00:05Z" });
    expect(cond?.message).toContain(DIGEST_A);
    expect(lost.status.phase).toBe("Succeed");
    // Still gone a day later: only the next check time moves.
    const still = run(succeedReq(lost.status), day(2), { images: gone });
    expect(still.status.conditions).toEqual(lost.status.conditions);
    expect(still.status.imageCheck?.nextCheckTime).toBe("2026-12-02T10:00:05Z");
    // Back (restored from a backup): True again.
    const back = run(succeedReq(still.status), day(3), { images: there });
    expect(back.status.conditions?.find((c) => c.type === "ImageAvailable")).toMatchObject({ status: "True", lastTransitionTime: "2026-12-02T10:00:05Z" });
    // Still there: the conditions are unchanged.
    expect(run(succeedReq(back.status), day(4), { images: there }).status.conditions).toEqual(back.status.conditions);
  });

  it("leaves the condition alone when the registry does not answer, and tries again sooner", () => {
    const s = succeed();
    const down: ImageCheckResults = { purpose: "recheck", results: [{ containerName: "sandbox", atDigest: { outcome: "error", message: "HTTP 503" } }] };
    const res = run(succeedReq(s), day(1), { images: down });
    expect(res.status.conditions).toEqual(s.conditions);
    expect(res.status.imageCheck?.nextCheckTime).toBe("2026-11-30T10:05:05Z");
  });

  it("is off with IMAGE_RECHECK_SECONDS=0", () => {
    const off = loadConfig({ SNAPSHOT_REGISTRY: "registry.example.com/snapshots", IMAGE_RECHECK_SECONDS: "0" });
    const s = succeed();
    expect(planImageChecks(succeedReq(s), off, day(5))).toBeUndefined();
    const res = sync(succeedReq(s), off, day(5), {});
    expect(res.status).toEqual(s);
    expect(res.resyncAfterSeconds).toBeUndefined();
  });
});

describe("the image verifier (shell) reads what the core planned, within its budget", () => {
  it("reads the tag, and the claimed digest only when the tag shows another", async () => {
    const calls: string[] = [];
    const verifier = await createImageVerifier(cfg, {
      dockerConfig: undefined,
      clientFor: () => ({
        getManifest: (repo, ref) => {
          calls.push(`${repo}:${ref}`);
          if (ref === DIGEST_B) return Promise.reject(new RegistryError({ kind: "not-found", operation: "manifest-get", registry: "r", reason: "unknown", status: 404 }));
          return Promise.resolve({ digest: DIGEST_A, mediaType: "", size: 1, bytes: new Uint8Array(), manifest: { schemaVersion: 2, layers: [{ size: 5 }, { size: 42 }] }, annotations: { "sandbox.opensandbox.io/snapshot-uid": UID } } as never);
        },
      }),
    });
    const base = { containerName: "sandbox", imageUri: "r/x:t", registry: "r", repository: "x", tag: "t" };
    const out = await verifier({ purpose: "commit", checks: [{ ...base, digest: DIGEST_A }, { ...base, containerName: "b", digest: DIGEST_B }] }, pino({ level: "silent" }));
    expect(out.results[0]).toEqual({ containerName: "sandbox", atTag: { outcome: "found", digest: DIGEST_A, snapshotUid: UID, sizeBytes: 42 } });
    expect(out.results[1]?.atDigest).toEqual({ outcome: "not-found" });
    expect(calls).toEqual(["x:t", "x:t", `x:${DIGEST_B}`]);
  });

  it("answers in time with an error lookup when the registry hangs", async () => {
    const verifier = await createImageVerifier(cfg, { dockerConfig: undefined, budgetMs: 100, clientFor: () => ({ getManifest: () => new Promise<never>(() => undefined) }) });
    const started = Date.now();
    const out = await verifier({ purpose: "commit", checks: [{ containerName: "sandbox", imageUri: "r/x:t", registry: "r", repository: "x", tag: "t", digest: undefined }] }, pino({ level: "silent" }));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(out.results[0]?.atTag).toMatchObject({ outcome: "error", message: expect.stringContaining("budget") as string });
  });
});

describe("verify before delete", () => {
  const URI = "registry.example.com/snapshots/sandboxes/sbx/sandbox:snap-1";
  const REPO = "snapshots/sandboxes/sbx/sandbox";
  const recorded: SandboxSnapshotStatus = { phase: "Succeed", deletionPolicy: "Delete", containers: [{ containerName: "sandbox", imageUri: `${URI}@${DIGEST_A}`, imageDigest: DIGEST_A }] };
  const deleting = (status: SandboxSnapshotStatus): SyncRequest => ({ ...request(snapshot({ sandboxName: "sbx" }, { status, deleting: "2026-11-29T10:00:04Z" })), finalizing: true });

  class Registry implements CleanupRegistry {
    manifests = new Map<string, string>([[DIGEST_A, UID], [DIGEST_B, "victim-uid"]]);
    deleted: string[] = [];
    manifestAnnotations(_repo: string, reference: string) {
      const uid = this.manifests.get(reference);
      return Promise.resolve(uid === undefined ? undefined : { digest: reference, annotations: { "sandbox.opensandbox.io/snapshot-uid": uid } });
    }
    deleteManifest(_repo: string, digest: string) {
      this.deleted.push(digest);
      return Promise.resolve(this.manifests.delete(digest) ? ("deleted" as const) : ("not-found" as const));
    }
  }
  const stored = (status: SandboxSnapshotStatus, opts: { uid?: string; deleting?: boolean } = {}): SandboxSnapshot => {
    const s = snapshot({ sandboxName: "sbx" }, { status, ...(opts.deleting === false ? {} : { deleting: "2026-11-29T10:00:04Z" }) });
    s.metadata.uid = opts.uid ?? UID;
    return s;
  };
  const witness = (s: SandboxSnapshot | undefined | Error): SnapshotWitness => ({ getSandboxSnapshot: () => (s instanceof Error ? Promise.reject(s) : Promise.resolve(s)) });

  it("a fabricated POST /finalize for a digest the snapshot does not own deletes nothing", async () => {
    const reg = new Registry();
    const logs = new LogCapture();
    const run = await createCleanupRunner(cfg, { clientFor: () => reg, kube: witness(stored(recorded)), log: pino(logs) });
    // The attacker names the victim's digest in an otherwise real snapshot's request.
    const forged: SandboxSnapshotStatus = { ...recorded, containers: [{ containerName: "sandbox", imageUri: `${URI}@${DIGEST_B}`, imageDigest: DIGEST_B }] };
    const out = await run(deleting(forged), t0, pino(logs));
    expect(reg.deleted).toEqual([]);
    expect(reg.manifests.has(DIGEST_B)).toBe(true);
    expect(out?.finished).toBe(false);
    expect(out?.cleanup?.lastError).toContain("is not what SandboxSnapshot");
    expect(logs.text).toContain("does not vouch for this finalize request");
  });

  it.each([
    ["a snapshot that does not exist", undefined, "does not exist"],
    ["another object of the same name (other UID)", stored(recorded, { uid: "recreated" }), "has UID recreated"],
    ["a snapshot that is not being deleted", stored(recorded, { deleting: false }), "is not being deleted"],
    ["an API server that does not answer", new Error("connect ECONNREFUSED"), "could not re-read"],
  ])("deletes nothing for %s", async (_n, s, why) => {
    const reg = new Registry();
    const run = await createCleanupRunner(cfg, { clientFor: () => reg, kube: witness(s) });
    const out = await run(deleting(recorded), t0, pino({ level: "silent" }));
    expect(reg.deleted).toEqual([]);
    expect(out?.cleanup?.lastError).toContain(why);
  });

  it("deletes the recorded manifest when the API server vouches and the manifest carries the UID", async () => {
    const reg = new Registry();
    const run = await createCleanupRunner(cfg, { clientFor: () => reg, kube: witness(stored(recorded)) });
    const out = await run(deleting(recorded), t0, pino({ level: "silent" }));
    expect(reg.deleted).toEqual([DIGEST_A]);
    expect(out?.cleanup).toMatchObject({ state: "Done", deletedDigests: [DIGEST_A] });
  });

  it("leaves a recorded digest whose manifest is not ours, and reports it as foreign", async () => {
    const reg = new Registry();
    const mine: SandboxSnapshotStatus = { ...recorded, containers: [{ containerName: "sandbox", imageUri: `${URI}@${DIGEST_B}`, imageDigest: DIGEST_B }] };
    // Even when status (written by someone with status access) records it: the annotation decides.
    const run = await createCleanupRunner(cfg, { clientFor: () => reg, kube: witness(stored(mine)) });
    const out = await run(deleting(mine), t0, pino({ level: "silent" }));
    expect(reg.deleted).toEqual([]);
    expect(out?.cleanup).toMatchObject({ state: "Done", deletedDigests: [], foreignDigests: [`registry.example.com/${REPO}@${DIGEST_B}`] });
  });

  it("without API access, says once at start-up that finalize trusts its caller", async () => {
    const logs = new LogCapture();
    await createCleanupRunner(cfg, { clientFor: () => new Registry(), log: pino(logs) });
    expect(logs.text).toContain("trusts its caller");
  });

  it("witnessProblem accepts the stored object itself and a request whose images it records", () => {
    const req = deleting(recorded);
    expect(witnessProblem(req, stored(recorded))).toBeUndefined();
    expect(witnessProblem(req, stored({ ...recorded, cleanup: { state: "Pending", attempts: 2 } }))).toBeUndefined();
  });
});

describe("images per tenant", () => {
  it("two namespaces with the same pod, container and snapshot name get different image references", () => {
    const inNs = (ns: string): string => {
      const snap = snapshot({ podName: "p" });
      snap.metadata.namespace = ns;
      const p = pod("p");
      p.metadata = { ...p.metadata, namespace: ns };
      return sync(request(snap, { pods: [p] }), cfg, t0).status.containers?.[0]?.imageUri ?? "";
    };
    const a = inNs("tenant-a");
    const b = inNs("tenant-b");
    expect(a).toBe(`registry.example.com/snapshots/tenant-a/p/sandbox:${a.split(":").pop() ?? ""}`);
    expect(b).toBe(`registry.example.com/snapshots/tenant-b/p/sandbox:${b.split(":").pop() ?? ""}`);
    expect(a.split(":")[0]).not.toBe(b.split(":")[0]);
  });

  it("keeps '-' inside names unambiguous: a-b + c and a + b-c are different repositories", () => {
    const ref = (source: string, container: string): string => {
      const p = pod(source, { containers: [container] });
      return sync(request(snapshot({ podName: source }), { pods: [p] }), cfg, t0).status.containers?.[0]?.imageUri?.split(":")[0] ?? "";
    };
    expect(ref("a-b", "c")).not.toBe(ref("a", "b-c"));
  });
});
