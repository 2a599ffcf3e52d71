// Writes hooks/fixtures/finalize/*.json: finalize requests for every deletion path, the registry's
// answers to the clean-up the core planned, and the hook's response. test/unit/finalize-fixtures.test.ts
// checks them against the hook schemas and today's answers. Re-record only on purpose
// (`npx tsx scripts/record-finalize-fixtures.ts`) and review the diff.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import type { SandboxSnapshotStatus, SyncRequest } from "../src/api/types.js";
import type { TargetResult } from "../src/reconcile/cleanup.js";
import type { FinalizeLookups } from "../src/reconcile/finalize.js";
import { sync } from "../src/reconcile/sync.js";
import { FINALIZE_FIXTURES, replayFinalize, type FinalizeFixture } from "../test/support/finalize-fixtures.js";
import { DIGEST_A, batchSandbox, cfg, job, jobPod, pod, registryHolds, request, snapshot, t0, withStatus, type KeyStyle } from "../test/support/fixtures.js";
import { sandboxRequest, sandboxSnapshot } from "../test/support/agent-sandbox-fixtures.js";

export const DIGEST_C = `sha256:${"c".repeat(64)}`;
export const DIGEST_D = `sha256:${"d".repeat(64)}`;
const DELETED_AT = "2026-11-29T10:00:04Z";
const at = (seconds: number): Date => new Date(t0.getTime() + seconds * 1000);

mkdirSync(FINALIZE_FIXTURES, { recursive: true });
for (const f of readdirSync(FINALIZE_FIXTURES)) if (f.endsWith(".json")) rmSync(new URL(f, FINALIZE_FIXTURES));

function write(name: string, description: string, req: SyncRequest, now: Date, registry: TargetResult[] = [], lookups?: FinalizeLookups): FinalizeFixture {
  const { response } = replayFinalize(req, cfg, now, registry, lookups);
  const fx: FinalizeFixture = { hook: "finalize", description, now: now.toISOString(), request: req, registry, ...(lookups !== undefined ? { lookups } : {}), response };
  writeFileSync(new URL(`${name}.json`, FINALIZE_FIXTURES), JSON.stringify(fx, null, 2) + "\n");
  return fx;
}

// The statuses sync produces on the way (so the fixtures hold what the controller really stores).
const sandboxPod = pod("sbx-0", { containers: ["sandbox", "sidecar"] });
const sandboxWorld = { pods: [sandboxPod], batchSandboxes: [batchSandbox("sbx", { allocPods: ["sbx-0"] })] };
const committing = sync(request(snapshot(), sandboxWorld), cfg, t0).status;
const uris = (committing.containers ?? []).map((c) => c.imageUri ?? "");
const [SANDBOX_URI = "", SIDECAR_URI = ""] = uris;
const repoOf = (uri: string): string => uri.slice(0, uri.lastIndexOf(":"));
const commitResult = {
  containers: [
    { name: "sandbox", image: SANDBOX_URI, digest: DIGEST_A, sizeBytes: 4096 },
    { name: "sidecar", image: SIDECAR_URI, digest: DIGEST_C, sizeBytes: 2048 },
  ],
  freezeMillis: 42,
};
const succeeded = sync(
  request(snapshot({ sandboxName: "sbx" }, { status: committing }), {
    jobs: [job("snap1-commit", "succeeded")],
    pods: [sandboxPod, jobPod("snap1-commit", "Succeeded", JSON.stringify(commitResult))],
    batchSandboxes: sandboxWorld.batchSandboxes,
  }),
  cfg,
  t0,
  // The registry backs the result (src/reconcile/image-check.ts).
  { images: registryHolds(committing, { sandbox: DIGEST_A, sidecar: DIGEST_C }) },
).status;
// The commit died mid-push: no digests recorded.
const failedMidPush = sync(
  request(snapshot({ sandboxName: "sbx" }, { status: committing }), {
    jobs: [job("snap1-commit", "failed")],
    pods: [jobPod("snap1-commit", "Failed", JSON.stringify({ error: "push to registry.example.com: connection reset" }))],
  }),
  cfg,
  t0,
).status;

const A = `${repoOf(SANDBOX_URI)}@${DIGEST_A}`;
const C = `${repoOf(SIDECAR_URI)}@${DIGEST_C}`;
const deleting = (status: SandboxSnapshotStatus, spec: Parameters<typeof snapshot>[0] = { sandboxName: "sbx" }, opts: Parameters<typeof snapshot>[1] = {}) =>
  snapshot(spec, { status, deleting: DELETED_AT, ...opts });
const fin = (req: SyncRequest): SyncRequest => ({ ...req, finalizing: true });

// ---- in-flight commit -------------------------------------------------------------------------
for (const style of ["v1", "v2"] as KeyStyle[]) {
  write(
    `in-flight-commit-running-${style}`,
    "A commit still running when the snapshot is deleted: the commit Job is dropped, nothing is deleted from the registry while the committer may still push.",
    fin(request(deleting(committing), { style, jobs: [job("snap1-commit", "running")], pods: [sandboxPod, jobPod("snap1-commit", "Running")] })),
    t0,
  );
}
write(
  "in-flight-commit-stopped",
  "The stopped commit left the source containers possibly frozen: an unpause Job runs; the images pushed so far (no digest recorded) are looked up by tag and deleted because they carry this snapshot's UID.",
  fin(request(deleting(committing), {})),
  t0,
  [
    { ref: SANDBOX_URI, outcome: "deleted", digest: DIGEST_A },
    { ref: SIDECAR_URI, outcome: "not-found" },
  ],
  { sourcePod: sandboxPod },
);
write(
  "source-pod-gone",
  "The commit was stopped and a fresh read shows the source pod gone: nothing is frozen, no unpause Job; the registry is cleaned up, and the next call (over the stored status) finalizes.",
  fin(request(deleting(committing), {})),
  t0,
  [
    { ref: SANDBOX_URI, outcome: "not-found" },
    { ref: SIDECAR_URI, outcome: "not-found" },
  ],
  { sourcePod: null },
);

// ---- deletion policy --------------------------------------------------------------------------
write(
  "delete-succeed",
  "Delete policy: both recorded manifests are deleted by digest and the snapshot is finalized.",
  fin(request(deleting(succeeded), {})),
  t0,
  [
    { ref: A, outcome: "deleted", digest: DIGEST_A },
    { ref: C, outcome: "deleted", digest: DIGEST_C },
  ],
);
write(
  "retain-explicit",
  "spec.deletionPolicy Retain: the registry is not touched and the snapshot is finalized at once.",
  fin(request(deleting({ ...succeeded, deletionPolicy: "Retain" }, { sandboxName: "sbx", deletionPolicy: "Retain" }), {})),
  t0,
);
const ownedStatus = { ...succeeded, deletionPolicy: "Retain" as const };
write(
  "retain-batchsandbox-owned-default",
  "No explicit policy and a BatchSandbox controls the snapshot: Retain (a resumed sandbox may run from the image), nothing deleted.",
  fin(request(deleting(ownedStatus, { sandboxName: "sbx" }, { owner: "BatchSandbox" }), {})),
  t0,
);
// A status without a stored policy, so the owner rule itself decides.
const { deletionPolicy: _stored, ...succeededNoPolicy } = succeeded;
write(
  "retain-agent-sandbox-owned-default",
  "No explicit policy and an agent-sandbox Sandbox controls the snapshot: Retain (a Sandbox resumed from the snapshot runs from its images), nothing deleted.",
  fin(sandboxRequest(sandboxSnapshot("asb", { owned: true, status: succeededNoPolicy, deleting: DELETED_AT }))),
  t0,
);
write(
  "delete-batchsandbox-owned-explicit",
  "A BatchSandbox-owned snapshot with an explicit Delete policy: its manifests are deleted.",
  fin(request(deleting({ ...succeeded, deletionPolicy: "Delete" }, { sandboxName: "sbx", deletionPolicy: "Delete" }, { owner: "BatchSandbox" }), {})),
  t0,
  [
    { ref: A, outcome: "deleted", digest: DIGEST_A },
    { ref: C, outcome: "deleted", digest: DIGEST_C },
  ],
);
write(
  "nothing-pushed",
  "A snapshot that failed before anything was pushed has nothing in the registry: clean-up is done without a registry call.",
  fin(request(snapshot({ sandboxName: "sbx" }, { deleting: DELETED_AT, status: { phase: "Failed", deletionPolicy: "Delete" } }), {})),
  t0,
);

// ---- registry answers -------------------------------------------------------------------------
write(
  "already-gone-404",
  "Manifests already gone (404) count as deleted: clean-up done.",
  fin(request(deleting(succeeded), {})),
  t0,
  [
    { ref: A, outcome: "not-found", digest: DIGEST_A },
    { ref: C, outcome: "not-found", digest: DIGEST_C },
  ],
);
write(
  "deletion-unsupported-405",
  "The registry answers 405 (deletion disabled): clean-up is abandoned by rule and the snapshot finalized; the reason stays in status.",
  fin(request(deleting(succeeded), {})),
  t0,
  [
    { ref: A, outcome: "unsupported", message: "registry manifest-delete registry.example.com/snapshots/sbx-sandbox: deletion is not supported by this registry (HTTP 405 UNSUPPORTED)" },
    { ref: C, outcome: "unsupported", message: "registry manifest-delete registry.example.com/snapshots/sbx-sidecar: deletion is not supported by this registry (HTTP 405 UNSUPPORTED)" },
  ],
);
const outageError = "registry manifest-delete registry.example.com/snapshots/sbx-sidecar: connect ECONNREFUSED 10.0.0.7:443 after 2 attempts";
const outage = write(
  "outage-first-attempt",
  "Registry outage on the first attempt: what was deleted is recorded, the rest stays to do; next attempt in 5 s (backoff) with the error in status.",
  fin(request(deleting(succeeded), {})),
  t0,
  [
    { ref: A, outcome: "deleted", digest: DIGEST_A },
    { ref: C, outcome: "error", message: outageError },
  ],
);
const afterOutage = withStatus(fin(request(deleting(succeeded), {})), outage.response.status);
write(
  "outage-before-next-attempt",
  "Called again before the stored next attempt time: no registry call, the identical status (fixpoint), resync when the attempt is due.",
  afterOutage,
  at(3),
);
const second = write(
  "outage-second-attempt",
  "Still down at the second attempt: only the outstanding manifest is tried; the backoff doubles to 10 s.",
  afterOutage,
  at(5),
  [{ ref: C, outcome: "error", message: outageError }],
);
write(
  "outage-recovered",
  "The registry is back: the outstanding manifest is deleted, clean-up done, finalized.",
  withStatus(afterOutage, second.response.status),
  at(15),
  [{ ref: C, outcome: "deleted", digest: DIGEST_C }],
);
write(
  "budget-exhausted",
  "The call's time budget ran out before every manifest was tried: progress recorded, the next attempt follows in 1 s without backoff.",
  fin(request(deleting(succeeded), {})),
  t0,
  [
    { ref: A, outcome: "deleted", digest: DIGEST_A },
    { ref: C, outcome: "not-attempted" },
  ],
);
write(
  "deadline-passed",
  "CLEANUP_DEADLINE_SECONDS after deletion the registry still fails: a last attempt, then clean-up is abandoned by rule and the snapshot finalized.",
  withStatus(fin(request(deleting(succeeded), {})), {
    ...succeeded,
    cleanup: { state: "Pending", attempts: 17, nextAttemptTime: "2026-11-29T11:00:00Z", lastError: outageError, deletedDigests: [DIGEST_A] },
  }),
  new Date("2026-11-29T11:00:05Z"),
  [{ ref: C, outcome: "error", message: outageError }],
);
write(
  "done-stored",
  "Clean-up already done in an earlier call: no registry call, finalized.",
  withStatus(fin(request(deleting(succeeded), {})), {
    ...succeeded,
    cleanup: { state: "Done", attempts: 1, deletedDigests: [DIGEST_A, DIGEST_C] },
  }),
  at(30),
);

// ---- digest never recorded --------------------------------------------------------------------
write(
  "missing-digest-ours",
  "The commit died mid-push (no digest in status): the tag is looked up, its manifest carries this snapshot's UID, so it is deleted.",
  fin(request(deleting(failedMidPush), {})),
  t0,
  [
    { ref: SANDBOX_URI, outcome: "deleted", digest: DIGEST_A },
    { ref: SIDECAR_URI, outcome: "not-found" },
  ],
  { sourcePod: null },
);
write(
  "missing-digest-foreign",
  "The commit died mid-push and the tag points at a manifest without this snapshot's UID (another snapshot's): left alone, nothing deleted.",
  fin(request(deleting(failedMidPush), {})),
  t0,
  [
    { ref: SANDBOX_URI, outcome: "foreign", digest: DIGEST_D },
    { ref: SIDECAR_URI, outcome: "not-found" },
  ],
  { sourcePod: null },
);
process.stdout.write(`finalize fixtures recorded in ${FINALIZE_FIXTURES.pathname}\n`);
