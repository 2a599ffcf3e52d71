// The finalize hook's decisions (pure). A deleted snapshot: stop a commit still in flight and make
// sure the source containers run again, remove the Jobs, then let the registry clean-up finish.
// Same gather → decide → act shape as sync: the shell gathers the look-ups planFinalizeLookups asks
// for and the clean-up results, decideFinalize decides, the shell answers and emits the Events.
import type { SandboxSnapshotStatus, SyncRequest, SyncResponse, Job } from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { FINALIZE_COMMIT_WAIT_SECONDS, secondsSince } from "./bounds.js";
import { findCondition, setCondition } from "./conditions.js";
import { transitionEvents } from "./events.js";
import { commitJobName } from "./names.js";
import { findByName, mergeByName, observe, podIsActive, trustedJobPods, type Ignored } from "./observe.js";
import { effectiveDeletionPolicy } from "./policy.js";
import {
  RESYNC_WAITING_SECONDS,
  commitJobUid,
  planJobLookups,
  uniqueIgnored,
  unpauseDecision,
  type Decided,
  type SyncLookupPlan,
  type SyncLookups,
} from "./sync.js";

export interface FinalizeCleanup {
  /** The clean-up part of status after this call, and whether it is finished (Done or Abandoned). */
  cleanup: SandboxSnapshotStatus["cleanup"];
  finished: boolean;
  resyncAfterSeconds?: number;
}

export type FinalizeLookups = Pick<SyncLookups, "commitPods" | "commitPodsError" | "sourcePod" | "sourcePodError">;
export type FinalizeLookupPlan = Pick<SyncLookupPlan, "commitPods" | "sourcePod">;

/** A deletion during a commit (or before its unpause settled) still has to make sure nothing stays frozen. */
function resumeOpen(status: SandboxSnapshotStatus | undefined): boolean {
  const resumed = findCondition(status?.conditions, "ContainersResumed");
  return resumed === undefined ? status?.phase === "Committing" : resumed.status === "Unknown";
}

/** What the shell must read before calling finalize: the commit pods and the recorded source pod. */
export function planFinalizeLookups(req: SyncRequest): FinalizeLookupPlan {
  if (!resumeOpen(req.parent.status)) return {};
  const { commitPods, sourcePod } = planJobLookups(req.parent, observe(req));
  return { ...(commitPods !== undefined ? { commitPods } : {}), ...(sourcePod !== undefined ? { sourcePod } : {}) };
}

/**
 * Equal as Metacontroller compares them: the same fields with the same values, observedGeneration
 * included (Metacontroller sets it to metadata.generation, which the API server bumps when it marks
 * an object for deletion, so the first finalize call always has a status to write).
 */
export function sameStatus(a: SandboxSnapshotStatus | undefined, b: SandboxSnapshotStatus | undefined): boolean {
  const canon = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(canon);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>)
          .filter(([, x]) => x !== undefined)
          .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
          .map(([k, x]) => [k, canon(x)]),
      );
    }
    return v;
  };
  return JSON.stringify(canon(a ?? {})) === JSON.stringify(canon(b ?? {}));
}

/**
 * cleanup: the registry clean-up's folded result for this call (see src/reconcile/cleanup.ts); when
 * absent, nothing in the registry is to be deleted.
 */
export function decideFinalize(
  req: SyncRequest,
  cfg: ControllerConfig,
  now: Date,
  cleanup?: FinalizeCleanup,
  lookups: FinalizeLookups = {},
): Decided {
  const snap = req.parent;
  const observed = observe(req);
  const prev = snap.status ?? {};
  const ignored: Ignored[] = [];
  let status: SandboxSnapshotStatus = { ...prev, deletionPolicy: effectiveDeletionPolicy(snap) };
  if (cleanup?.cleanup !== undefined) status.cleanup = cleanup.cleanup;
  if (snap.metadata.generation !== undefined) status.observedGeneration = snap.metadata.generation;

  const children: Job[] = [];
  let resync: number | undefined = cleanup?.resyncAfterSeconds;
  const wait = (seconds: number): void => {
    resync = resync === undefined ? seconds : Math.min(resync, seconds);
  };

  // A commit still in flight: its Job is no longer returned (Metacontroller deletes it, the committer
  // resumes on SIGTERM); once no commit pod runs, an unpause Job covers a committer that was killed.
  if (prev.phase === "Committing" && findCondition(prev.conditions, "ContainersResumed") === undefined) {
    status.conditions = setCondition(
      status.conditions,
      "ContainersResumed",
      "Unknown",
      "UnpauseRequired",
      "the snapshot was deleted during its commit; the source containers are being resumed",
      now,
    );
  }
  if (findCondition(status.conditions, "ContainersResumed")?.status === "Unknown") {
    const jobName = commitJobName(snap.metadata.name ?? "");
    const trusted = trustedJobPods(mergeByName(observed.pods, lookups.commitPods ?? []), jobName, commitJobUid(snap, observed), findByName(observed.jobs, jobName));
    ignored.push(...trusted.ignored);
    // Bounded: a pod past its deletionTimestamp is taken as gone (podIsActive), and after
    // FINALIZE_COMMIT_WAIT_SECONDS from the deletion nothing is waited for any more.
    const sinceDeletion = secondsSince(snap.metadata.deletionTimestamp, now);
    const waitOver = sinceDeletion !== undefined && sinceDeletion >= FINALIZE_COMMIT_WAIT_SECONDS;
    const active = trusted.pods.find((p) => podIsActive(p, now));
    if (active !== undefined && !waitOver) {
      status.conditions = setCondition(
        status.conditions,
        "ContainersResumed",
        "Unknown",
        "CommitStopping",
        `the snapshot was deleted during its commit; waiting for commit pod ${active.metadata?.name ?? ""} to stop (at most ${FINALIZE_COMMIT_WAIT_SECONDS}s after the deletion)`,
        now,
      );
      wait(RESYNC_WAITING_SECONDS);
    } else {
      const d = unpauseDecision(snap, status, observed, lookups, cfg);
      if (d.settled) {
        status = {
          ...status,
          conditions: setCondition(status.conditions, "ContainersResumed", d.settled.status, d.settled.reason, d.settled.message, now),
        };
      }
      // A finished unpause Job stays until the stored status records the outcome (see sync.ts).
      if (d.job) {
        children.push(d.job);
        wait(d.settled ? 1 : RESYNC_WAITING_SECONDS);
      }
    }
  }

  const resumed = findCondition(status.conditions, "ContainersResumed")?.status !== "Unknown";
  const jobsGone = observed.jobs.length === 0;
  const cleanupFinished = cleanup === undefined || cleanup.finished;
  const done = resumed && jobsGone && cleanupFinished && children.length === 0;
  // Metacontroller removes its finalizer on `finalized: true` before it writes the returned status,
  // so that status must already be the stored one: a call that changes it writes it first, and the
  // next call (seeing it stored) finalizes.
  const finalized = done && sameStatus(status, prev);
  if (done && !finalized) wait(1);
  if (!finalized && !jobsGone && resync === undefined) wait(RESYNC_WAITING_SECONDS);

  const response: SyncResponse = { status, children, finalized };
  if (!finalized && resync !== undefined) response.resyncAfterSeconds = resync;
  return { response, events: transitionEvents(snap.status, status), ignored: uniqueIgnored(ignored) };
}

export function finalize(req: SyncRequest, cfg: ControllerConfig, now: Date, cleanup?: FinalizeCleanup, lookups: FinalizeLookups = {}): SyncResponse {
  return decideFinalize(req, cfg, now, cleanup, lookups).response;
}
