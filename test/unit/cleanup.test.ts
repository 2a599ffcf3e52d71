// The registry clean-up: the pure planner and folder, and the runner (shell) with a fake registry —
// time budget, metrics, secrets never in status or logs, never throwing, Events on outcomes.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import type { SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { backoffSeconds, foldCleanup, planCleanup, type TargetResult } from "../../src/reconcile/cleanup.js";
import { finalize } from "../../src/reconcile/finalize.js";
import { RegistryError } from "../../src/registry/errors.js";
import { startServer } from "../../src/server/app.js";
import { cleanupEvent, createCleanupRunner, type CleanupRegistry } from "../../src/server/cleanup-runner.js";
import { createMetrics, type Metrics } from "../../src/server/metrics.js";
import { DIGEST_A, DIGEST_B, UID, cfg, job, jobPod, request, snapshot, t0 } from "../support/fixtures.js";
import { emptyKube } from "../support/fake-kube.js";
import { LogCapture } from "../support/log-capture.js";

const DELETED_AT = "2026-11-29T10:00:04Z";
const REPO_A = "snapshots/sbx-sandbox";
const REPO_B = "snapshots/sbx-sidecar";
const URI_A = `registry.example.com/${REPO_A}:snap-1`;
const URI_B = `registry.example.com/${REPO_B}:snap-1`;
const SECRET = "pa55-w0rd-Never-Log-Me-93c1";

function deletedSnapshot(status: SandboxSnapshotStatus, opts: { spec?: Parameters<typeof snapshot>[0] } = {}): SyncRequest {
  return { ...request(snapshot(opts.spec ?? { sandboxName: "sbx" }, { status, deleting: DELETED_AT })), finalizing: true };
}

const succeeded: SandboxSnapshotStatus = {
  phase: "Succeed",
  deletionPolicy: "Delete",
  containers: [
    { containerName: "sandbox", imageUri: URI_A, imageDigest: DIGEST_A },
    { containerName: "sidecar", imageUri: URI_B, imageDigest: DIGEST_B },
  ],
};
const midPush: SandboxSnapshotStatus = {
  phase: "Failed",
  deletionPolicy: "Delete",
  containers: [{ containerName: "sandbox", imageUri: URI_A }],
};

/** A fake registry: manifests by repository → digest → annotations; calls recorded. */
class FakeRegistry implements CleanupRegistry {
  calls: string[] = [];
  manifests = new Map<string, Map<string, Record<string, string>>>();
  tags = new Map<string, string>();
  fail: ((op: string) => Error | undefined) | undefined;
  delayMs = 0;

  put(repo: string, digest: string, annotations: Record<string, string>, tag?: string): void {
    const m = this.manifests.get(repo) ?? new Map<string, Record<string, string>>();
    m.set(digest, annotations);
    this.manifests.set(repo, m);
    if (tag !== undefined) this.tags.set(`${repo}:${tag}`, digest);
  }

  private async step(op: string): Promise<void> {
    this.calls.push(op);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    const e = this.fail?.(op);
    if (e) throw e;
  }

  async deleteManifest(repository: string, digest: string): Promise<"deleted" | "not-found"> {
    await this.step(`DELETE ${repository}@${digest}`);
    const had = this.manifests.get(repository)?.delete(digest) === true;
    for (const [k, d] of this.tags) if (d === digest && k.startsWith(`${repository}:`)) this.tags.delete(k);
    return had ? "deleted" : "not-found";
  }

  async manifestAnnotations(repository: string, reference: string): Promise<{ digest: string; annotations: Record<string, string> } | undefined> {
    await this.step(`GET ${repository}:${reference}`);
    const digest = reference.startsWith("sha256:") ? reference : this.tags.get(`${repository}:${reference}`);
    const annotations = digest === undefined ? undefined : this.manifests.get(repository)?.get(digest);
    return digest === undefined || annotations === undefined ? undefined : { digest, annotations };
  }
}

async function runner(fake: FakeRegistry, opts: { budgetMs?: number; concurrency?: number; config?: typeof cfg } = {}) {
  const logs = new LogCapture();
  const log = pino({ level: "debug" }, logs);
  const metrics = createMetrics();
  const run = await createCleanupRunner(opts.config ?? cfg, { clientFor: () => fake, log, ...opts });
  return { run: (req: SyncRequest, now = t0) => run(req, now, log, metrics), logs, metrics };
}

async function counter(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  const v = (m?.values ?? []).find((x) => Object.entries(labels).every(([k, l]) => (x.labels as Record<string, unknown>)[k] === l));
  return v?.value ?? 0;
}

describe("planCleanup", () => {
  it("plans one delete by digest per recorded manifest, and a tag look-up where no digest was recorded", () => {
    const status: SandboxSnapshotStatus = {
      ...succeeded,
      containers: [
        { containerName: "sandbox", imageUri: URI_A, imageDigest: DIGEST_A },
        { containerName: "sidecar", imageUri: URI_B },
      ],
    };
    const plan = planCleanup(deletedSnapshot(status), cfg, t0);
    expect(plan).toEqual({
      action: "attempt",
      uid: UID,
      unusable: [],
      targets: [
        { kind: "digest", ref: `registry.example.com/${REPO_A}@${DIGEST_A}`, registry: "registry.example.com", repository: REPO_A, digest: DIGEST_A, containers: ["sandbox"] },
        { kind: "tag", ref: URI_B, registry: "registry.example.com", repository: REPO_B, tag: "snap-1", containers: ["sidecar"] },
      ],
    });
  });

  it("skips digests already recorded as deleted and merges containers sharing a manifest", () => {
    const status: SandboxSnapshotStatus = {
      ...succeeded,
      containers: [
        { containerName: "a", imageUri: URI_A, imageDigest: DIGEST_A },
        { containerName: "b", imageUri: URI_A, imageDigest: DIGEST_A },
        { containerName: "c", imageUri: URI_B, imageDigest: DIGEST_B },
      ],
      cleanup: { state: "Pending", attempts: 1, deletedDigests: [DIGEST_B], nextAttemptTime: "2026-11-29T10:00:00Z" },
    };
    const plan = planCleanup(deletedSnapshot(status), cfg, t0);
    expect(plan.action === "attempt" ? plan.targets.map((t) => [t.ref, t.containers]) : plan).toEqual([[`registry.example.com/${REPO_A}@${DIGEST_A}`, ["a", "b"]]]);
  });

  it("reports an image reference nothing can be done with instead of failing", () => {
    const status: SandboxSnapshotStatus = { ...succeeded, containers: [{ containerName: "x", imageUri: "Not A Ref", imageDigest: DIGEST_A }] };
    const plan = planCleanup(deletedSnapshot(status), cfg, t0);
    expect(plan.action === "attempt" ? plan.unusable.map((u) => u.containerName) : plan).toEqual(["x"]);
  });

  it("waits while the commit Job still runs, even when its pod is not listed", () => {
    const req = { ...request(snapshot({ sandboxName: "sbx" }, { status: midPush, deleting: DELETED_AT }), { jobs: [job("snap1-commit", "running")] }), finalizing: true };
    expect(planCleanup(req, cfg, t0)).toMatchObject({ action: "wait", reason: "commit-in-flight" });
  });

  it("waits while a commit pod is still active after its Job is gone", () => {
    const req = { ...request(snapshot({ sandboxName: "sbx" }, { status: { ...midPush, commitJob: { uid: "job-uid-snap1-commit" } }, deleting: DELETED_AT }), { pods: [jobPod("snap1-commit", "Running")] }), finalizing: true };
    expect(planCleanup(req, cfg, t0)).toMatchObject({ action: "wait", reason: "commit-in-flight" });
  });

  it("makes a last attempt past the deadline even before the stored next attempt time", () => {
    const status = { ...succeeded, cleanup: { state: "Pending" as const, attempts: 3, nextAttemptTime: "2026-11-29T12:00:00Z" } };
    const late = new Date("2026-11-29T11:00:05Z");
    expect(planCleanup(deletedSnapshot(status), cfg, late).action).toBe("attempt");
    expect(planCleanup(deletedSnapshot(status), cfg, t0).action).toBe("wait");
  });

  it("is a pure function: the same input gives the same plan and the same fold", () => {
    const req = deletedSnapshot(succeeded);
    const results: TargetResult[] = [{ ref: `registry.example.com/${REPO_A}@${DIGEST_A}`, outcome: "error", message: "down" }];
    expect(planCleanup(req, cfg, t0)).toEqual(planCleanup(req, cfg, t0));
    expect(foldCleanup(req, cfg, t0, planCleanup(req, cfg, t0), results)).toEqual(foldCleanup(req, cfg, t0, planCleanup(req, cfg, t0), results));
  });
});

describe("foldCleanup", () => {
  it("backs off 5 s · 2^n up to 5 minutes", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map(backoffSeconds)).toEqual([5, 10, 20, 40, 80, 160, 300, 300, 300]);
  });

  it("never schedules the next attempt later than just after the deadline", () => {
    const status = { ...succeeded, cleanup: { state: "Pending" as const, attempts: 12, nextAttemptTime: "2026-11-29T10:58:00Z" } };
    const now = new Date("2026-11-29T10:59:00Z");
    const req = deletedSnapshot(status);
    const plan = planCleanup(req, cfg, now);
    const refs = plan.action === "attempt" ? plan.targets.map((t) => t.ref) : [];
    const fold = foldCleanup(req, cfg, now, plan, refs.map((ref) => ({ ref, outcome: "error", message: "down" })));
    expect(fold?.cleanup?.nextAttemptTime).toBe("2026-11-29T11:00:05Z");
    expect(fold?.resyncAfterSeconds).toBe(65);
  });

  it("abandons on 405 even when other manifests failed transiently", () => {
    const req = deletedSnapshot(succeeded);
    const plan = planCleanup(req, cfg, t0);
    const [a, b] = plan.action === "attempt" ? plan.targets.map((t) => t.ref) : [];
    const fold = foldCleanup(req, cfg, t0, plan, [
      { ref: a ?? "", outcome: "unsupported", message: "HTTP 405" },
      { ref: b ?? "", outcome: "error", message: "timeout" },
    ]);
    expect(fold).toMatchObject({ finished: true, abandoned: "deletion-unsupported", cleanup: { state: "Abandoned" } });
  });

  it("returns nothing for Retain (the finalize core then keeps no clean-up status)", () => {
    const req = deletedSnapshot({ ...succeeded, deletionPolicy: "Retain" }, { spec: { sandboxName: "sbx", deletionPolicy: "Retain" } });
    expect(foldCleanup(req, cfg, t0, planCleanup(req, cfg, t0))).toBeUndefined();
  });
});

describe("cleanup runner", () => {
  const dir = mkdtempSync(join(tmpdir(), "cleanup-test-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("deletes this snapshot's manifests and counts each outcome", async () => {
    const fake = new FakeRegistry();
    fake.put(REPO_A, DIGEST_A, { "sandbox.opensandbox.io/snapshot-uid": UID }, "snap-1");
    fake.put(REPO_B, `sha256:${"9".repeat(64)}`, {}, "other");
    const { run, metrics } = await runner(fake);
    const out = await run(deletedSnapshot(succeeded));
    expect(out?.cleanup).toEqual({ state: "Done", attempts: 1, deletedDigests: [DIGEST_A, DIGEST_B] });
    expect(fake.manifests.get(REPO_A)?.size).toBe(0);
    expect(fake.manifests.get(REPO_B)?.size).toBe(1);
    expect(await counter(metrics, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "deleted" })).toBe(1);
    expect(await counter(metrics, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "not_found" })).toBe(1);
  });

  it("deletes an unrecorded manifest only when it carries this snapshot's UID", async () => {
    const fake = new FakeRegistry();
    fake.put(REPO_A, DIGEST_A, { "sandbox.opensandbox.io/snapshot-uid": UID }, "snap-1");
    const { run } = await runner(fake);
    const out = await run(deletedSnapshot(midPush));
    expect(fake.calls).toEqual([`GET ${REPO_A}:snap-1`, `DELETE ${REPO_A}@${DIGEST_A}`]);
    expect(out?.cleanup?.deletedDigests).toEqual([DIGEST_A]);

    const foreign = new FakeRegistry();
    foreign.put(REPO_A, DIGEST_A, { "sandbox.opensandbox.io/snapshot-uid": "someone-else" }, "snap-1");
    const r2 = await runner(foreign);
    const out2 = await r2.run(deletedSnapshot(midPush));
    expect(foreign.calls).toEqual([`GET ${REPO_A}:snap-1`]);
    // Left in the registry, and reported in status.
    expect(out2?.cleanup).toEqual({ state: "Done", attempts: 1, deletedDigests: [], foreignDigests: [`registry.example.com/${REPO_A}@${DIGEST_A}`] });
    expect(r2.logs.text).toContain("without this snapshot's UID annotation");
  });

  it("abandons on 405 and counts it", async () => {
    const fake = new FakeRegistry();
    fake.fail = () => new RegistryError({ kind: "deletion-unsupported", operation: "manifest-delete", registry: "registry.example.com", reason: "deletion is disabled", status: 405 });
    const { run, metrics, logs } = await runner(fake);
    const out = await run(deletedSnapshot(succeeded));
    expect(out).toMatchObject({ finished: true, cleanup: { state: "Abandoned" } });
    expect(await counter(metrics, "sandbox_snapshot_cleanup_abandoned_total", { reason: "deletion-unsupported" })).toBe(1);
    expect(await counter(metrics, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "unsupported" })).toBe(2);
    expect(logs.text).toContain("registry clean-up abandoned");
  });

  it("stays within its time budget: what it could not try is tried in the next call", async () => {
    const fake = new FakeRegistry();
    fake.delayMs = 250;
    const { run, metrics } = await runner(fake, { budgetMs: 200, concurrency: 1 });
    const started = Date.now();
    const out = await run(deletedSnapshot(succeeded));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(fake.calls).toHaveLength(1);
    expect(out).toMatchObject({ finished: false, resyncAfterSeconds: 1, cleanup: { state: "Pending", deletedDigests: [DIGEST_A] } });
    expect(await counter(metrics, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "not_attempted" })).toBe(1);
  });

  it("answers in time even when a registry call ignores its deadline", async () => {
    const fake = new FakeRegistry();
    fake.put(REPO_A, DIGEST_A, { "sandbox.opensandbox.io/snapshot-uid": UID });
    fake.deleteManifest = () => new Promise<"deleted">(() => undefined);
    const { run } = await runner(fake, { budgetMs: 100 });
    const started = Date.now();
    const out = await run(deletedSnapshot(succeeded));
    expect(Date.now() - started).toBeLessThan(1500);
    expect(out).toMatchObject({ finished: false, cleanup: { state: "Pending", attempts: 1, lastError: expect.stringContaining("time budget") as string } });
  });

  it("keeps credentials out of status and logs, whatever an error says", async () => {
    const path = join(dir, "config.json");
    writeFileSync(path, JSON.stringify({ auths: { "registry.example.com": { username: "cleaner", password: SECRET } } }));
    const config = loadConfig({ SNAPSHOT_REGISTRY: "registry.example.com/snapshots", REGISTRY_CLEANUP_DOCKER_CONFIG: path });
    const fake = new FakeRegistry();
    fake.fail = () => new Error(`upstream said: bad password ${SECRET} for cleaner / Basic ${Buffer.from(`cleaner:${SECRET}`).toString("base64")}`);
    const { run, logs } = await runner(fake, { config });
    const out = await run(deletedSnapshot(succeeded));
    expect(out?.cleanup?.state).toBe("Pending");
    expect(out?.cleanup?.lastError).toContain("[redacted]");
    expect(JSON.stringify(out)).not.toContain(SECRET);
    expect(logs.text).not.toContain(SECRET);
    expect(logs.text).not.toContain(Buffer.from(`cleaner:${SECRET}`).toString("base64"));
    expect(logs.text).toContain("registry clean-up configured");
  });

  it("never throws: a registry client that cannot even be built leaves the status as it was", async () => {
    const logs = new LogCapture();
    const log = pino({ level: "debug" }, logs);
    const run = await createCleanupRunner(cfg, {
      clientFor: () => {
        throw new Error("boom");
      },
    });
    const req = deletedSnapshot({ ...succeeded, cleanup: { state: "Pending", attempts: 2, deletedDigests: [] } });
    const out = await run(req, t0, log);
    expect(out).toEqual({ cleanup: { state: "Pending", attempts: 2, deletedDigests: [] }, finished: false, resyncAfterSeconds: 30 });
    const res = finalize(req, cfg, t0, out);
    expect(res.finalized).toBe(false);
    expect(validateSyncResponse(res).ok).toBe(true);
  });

  it("stops start-up with a message naming REGISTRY_CLEANUP_DOCKER_CONFIG when the file is malformed, and runs anonymously (said in the log) when it is missing", async () => {
    const logs = new LogCapture();
    const missing = loadConfig({ REGISTRY_CLEANUP_DOCKER_CONFIG: join(dir, "nope.json") });
    await expect(createCleanupRunner(missing, { log: pino(logs) })).resolves.toBeTypeOf("function");
    expect(logs.text).toMatch(/REGISTRY_CLEANUP_DOCKER_CONFIG.*deleted anonymously|deleted anonymously.*REGISTRY_CLEANUP_DOCKER_CONFIG/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, `{"auths": {"x": {"password": "${SECRET}"`);
    const err = await createCleanupRunner(loadConfig({ REGISTRY_CLEANUP_DOCKER_CONFIG: bad })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/REGISTRY_CLEANUP_DOCKER_CONFIG.*not valid JSON/);
    expect((err as Error).message).not.toContain(SECRET);
  });
});

describe("clean-up Events", () => {
  it("finalize also reports the containers resumed after a commit stopped by the deletion", async () => {
    const events: Record<string, unknown>[] = [];
    const kube = emptyKube({
      createEvent: (_ns, ev) => {
        events.push(ev);
        return Promise.resolve("created" as const);
      },
    });
    const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });
    const cleanup = await createCleanupRunner(config, { clientFor: () => new FakeRegistry() });
    const server = await startServer(config, { log: pino({ level: "silent" }), kube, cleanup, clock: () => t0 });
    try {
      const committing: SandboxSnapshotStatus = { phase: "Committing", deletionPolicy: "Delete", sourcePodName: "sbx-0", sourceNodeName: "node-a", containers: [{ containerName: "sandbox", imageUri: URI_A }] };
      const res = await fetch(`http://127.0.0.1:${server.hookPort}/finalize`, { method: "POST", body: JSON.stringify(deletedSnapshot(committing)), headers: { "content-type": "application/json" } });
      // The status changed in this call (Done, SourceGone): finalized on the next call, over it.
      expect(((await res.json()) as { finalized: boolean }).finalized).toBe(false);
      await new Promise((r) => setTimeout(r, 50));
      expect(events.map((e) => e.reason)).toEqual(["SourceGone", "RegistryCleanupDone"]);
    } finally {
      await server.close();
    }
  });

  it("names Done and Abandoned once, when the state is reached", () => {
    const pending: SandboxSnapshotStatus = { cleanup: { state: "Pending" } };
    expect(cleanupEvent(pending, { cleanup: { state: "Done", deletedDigests: [DIGEST_A] } })).toMatchObject({ transition: "cleanup-done", type: "Normal" });
    expect(cleanupEvent(undefined, { cleanup: { state: "Abandoned", lastError: "HTTP 405" } })).toMatchObject({ transition: "cleanup-abandoned", type: "Warning", message: expect.stringContaining("HTTP 405") as string });
    expect(cleanupEvent({ cleanup: { state: "Done" } }, { cleanup: { state: "Done" } })).toBeUndefined();
    expect(cleanupEvent(undefined, { cleanup: { state: "Pending" } })).toBeUndefined();
  });

  it("the hook server emits the outcome Event with a deterministic name, and a failing Event API does not fail the hook", async () => {
    const events: Record<string, unknown>[] = [];
    let failEvents = false;
    const kube = emptyKube({
      createEvent: (_ns, ev) => {
        if (failEvents) return Promise.reject(new Error("forbidden"));
        events.push(ev);
        return Promise.resolve("created" as const);
      },
    });
    const fake = new FakeRegistry();
    const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });
    const cleanup = await createCleanupRunner(config, { clientFor: () => fake });
    const server = await startServer(config, { log: pino({ level: "silent" }), kube, cleanup, clock: () => t0 });
    try {
      const body = JSON.stringify(deletedSnapshot(succeeded));
      const post = () => fetch(`http://127.0.0.1:${server.hookPort}/finalize`, { method: "POST", body, headers: { "content-type": "application/json" } });
      const first = await post();
      expect(first.status).toBe(200);
      expect(((await first.json()) as { finalized: boolean }).finalized).toBe(false);
      await post();
      await new Promise((r) => setTimeout(r, 50));
      expect(events).toHaveLength(2);
      const names = events.map((e) => (e.metadata as { name: string }).name);
      expect(names[0]).toBe(names[1]);
      expect(events[0]).toMatchObject({ reason: "RegistryCleanupDone", type: "Normal" });
      failEvents = true;
      expect((await post()).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      expect(await counter(server.metrics, "sandbox_snapshot_event_failures_total", {})).toBe(1);
    } finally {
      await server.close();
    }
  });
});
