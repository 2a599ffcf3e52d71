// Properties of the clean-up core over generated statuses, times and registry answers: the fixpoint
// rule, bounded scheduling, and "never plan to delete anything not recorded as this snapshot's".
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { CleanupStatus, ContainerSnapshot, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { BACKOFF_MAX_SECONDS, foldCleanup, planCleanup, type TargetResult } from "../../src/reconcile/cleanup.js";
import { finalize } from "../../src/reconcile/finalize.js";
import { cfg, request, snapshot, withStatus } from "../support/fixtures.js";

const DELETED_AT = Date.parse("2026-11-29T10:00:00Z");
const DEADLINE = DELETED_AT + cfg.cleanupDeadlineSeconds * 1000;
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");

const hex = fc.constantFrom(..."0123456789abcdef".split(""));
const digest = fc.array(hex, { minLength: 64, maxLength: 64 }).map((h) => `sha256:${h.join("")}`);
const container: fc.Arbitrary<ContainerSnapshot> = fc.record({
  containerName: fc.constantFrom("sandbox", "sidecar", "tools", "db"),
  imageUri: fc.constantFrom("registry.example.com/snapshots/sbx-sandbox:snap-1", "registry.example.com/snapshots/sbx-sidecar:snap-1", "localhost:5000/s/x:snap-gen3"),
  imageDigest: fc.option(digest, { nil: undefined }),
});
const status: fc.Arbitrary<SandboxSnapshotStatus> = fc
  .record({
    containers: fc.array(container, { maxLength: 4 }),
    attempts: fc.integer({ min: 0, max: 30 }),
    pending: fc.boolean(),
    nextOffsetS: fc.integer({ min: -600, max: 600 }),
    deletedSome: fc.boolean(),
  })
  .map(({ containers, attempts, pending, nextOffsetS, deletedSome }) => {
    const s: SandboxSnapshotStatus = { phase: "Succeed", deletionPolicy: "Delete", containers };
    if (pending) {
      const cleanup: CleanupStatus = { state: "Pending", attempts, nextAttemptTime: iso(DELETED_AT + 60_000 + nextOffsetS * 1000) };
      if (deletedSome) cleanup.deletedDigests = containers.flatMap((c) => (c.imageDigest !== undefined ? [c.imageDigest] : [])).slice(0, 1);
      s.cleanup = cleanup;
    }
    return s;
  });
const nowMs = fc.integer({ min: DELETED_AT, max: DEADLINE + 3_600_000 });

function req(s: SandboxSnapshotStatus): SyncRequest {
  return { ...request(snapshot({ sandboxName: "sbx" }, { status: s, deleting: iso(DELETED_AT) })), finalizing: true };
}

describe("clean-up core properties", () => {
  it("before the stored next attempt time (and the deadline) the status is returned unchanged", () => {
    fc.assert(
      fc.property(status, nowMs, (s, now) => {
        const next = Date.parse(s.cleanup?.nextAttemptTime ?? "");
        fc.pre(s.cleanup !== undefined && now < next && now <= DEADLINE);
        const r = req(s);
        const plan = planCleanup(r, cfg, new Date(now));
        expect(plan.action).toBe("wait");
        const fold = foldCleanup(r, cfg, new Date(now), plan);
        const res = finalize(r, cfg, new Date(now), fold);
        expect(res.status).toEqual({ ...s, deletionPolicy: "Delete", observedGeneration: r.parent.metadata.generation });
        expect(res.resyncAfterSeconds).toBe(Math.max(1, Math.ceil((next - now) / 1000)));
      }),
    );
  });

  it("plans deletes only of recorded digests and look-ups only of recorded image references", () => {
    fc.assert(
      fc.property(status, nowMs, (s, now) => {
        const plan = planCleanup(req(s), cfg, new Date(now));
        if (plan.action !== "attempt") return;
        const recorded = new Set((s.containers ?? []).flatMap((c) => (c.imageDigest !== undefined ? [c.imageDigest] : [])));
        const done = new Set(s.cleanup?.deletedDigests ?? []);
        for (const t of plan.targets) {
          if (t.kind === "digest") {
            expect(recorded.has(t.digest)).toBe(true);
            expect(done.has(t.digest)).toBe(false);
          } else {
            expect((s.containers ?? []).some((c) => c.imageUri === t.ref && c.imageDigest === undefined)).toBe(true);
          }
        }
      }),
    );
  });

  it("after any attempt the answer is schema-valid, attempts grow by one, and the next attempt is soon and never far past the deadline", () => {
    const outcome = fc.constantFrom("deleted", "not-found", "foreign", "error", "not-attempted", "unsupported");
    fc.assert(
      fc.property(status, nowMs, fc.array(outcome, { minLength: 4, maxLength: 4 }), (s, now, outcomes) => {
        const r = req(s);
        const plan = planCleanup(r, cfg, new Date(now));
        if (plan.action !== "attempt") return;
        const results: TargetResult[] = plan.targets.map((t, i) => {
          const o = outcomes[i] ?? "error";
          if (o === "deleted" || o === "foreign") return { ref: t.ref, outcome: o, digest: t.kind === "digest" ? t.digest : `sha256:${"f".repeat(64)}` };
          if (o === "error" || o === "unsupported") return { ref: t.ref, outcome: o, message: "registry down" };
          return { ref: t.ref, outcome: o };
        });
        const fold = foldCleanup(r, cfg, new Date(now), plan, results);
        const res = finalize(r, cfg, new Date(now), fold);
        const v = validateSyncResponse(res);
        expect(v.ok ? [] : v.errors).toEqual([]);
        const c = res.status.cleanup;
        expect(c?.attempts).toBe((s.cleanup?.attempts ?? 0) + (plan.targets.length > 0 ? 1 : 0));
        for (const d of s.cleanup?.deletedDigests ?? []) expect(c?.deletedDigests).toContain(d);
        if (c?.state === "Pending") {
          const next = Date.parse(c.nextAttemptTime ?? "");
          expect(next).toBeGreaterThan(now);
          expect(next - now).toBeLessThanOrEqual((BACKOFF_MAX_SECONDS + 1) * 1000);
          expect(next).toBeLessThanOrEqual(Math.max(now + 2000, DEADLINE + 2000));
          expect(res.finalized).toBe(false);
        } else {
          // Done or Abandoned reached in this call: the status changed, so finalized comes on the
          // next call, over the status this one wrote (and that call plans no registry call).
          expect(res.finalized).toBe(false);
          const next = withStatus(r, res.status);
          const plan2 = planCleanup(next, cfg, new Date(now));
          expect(plan2.action).toBe("finished");
          expect(finalize(next, cfg, new Date(now), foldCleanup(next, cfg, new Date(now), plan2)).finalized).toBe(true);
        }
        if (now > DEADLINE) expect(c?.state).not.toBe("Pending");
      }),
    );
  });
});
