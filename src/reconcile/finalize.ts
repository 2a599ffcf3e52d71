// The finalize hook's decisions (pure). A deleted snapshot: stop a commit still in flight and make
// sure the source containers run again, remove the Jobs, then let the registry clean-up finish.
import type { Job, SandboxSnapshotStatus, SyncRequest, SyncResponse } from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { findCondition, setCondition } from "./conditions.js";
import { commitJobName } from "./names.js";
import { observe, podIsActive, podsOfJob } from "./observe.js";
import { effectiveDeletionPolicy } from "./policy.js";
import { RESYNC_WAITING_SECONDS, unpauseDecision } from "./sync.js";

export interface FinalizeCleanup {
  /** The clean-up part of status after this call, and whether it is finished (Done or Abandoned). */
  cleanup: SandboxSnapshotStatus["cleanup"];
  finished: boolean;
  resyncAfterSeconds?: number;
}

/**
 * cleanup: the registry clean-up's folded result for this call (see src/reconcile/cleanup.ts); when
 * absent, nothing in the registry is to be deleted.
 */
export function finalize(req: SyncRequest, cfg: ControllerConfig, now: Date, cleanup?: FinalizeCleanup): SyncResponse {
  const snap = req.parent;
  const observed = observe(req);
  const prev = snap.status ?? {};
  let status: SandboxSnapshotStatus = { ...prev, deletionPolicy: effectiveDeletionPolicy(snap) };
  if (cleanup?.cleanup !== undefined) status.cleanup = cleanup.cleanup;

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
    const commitPodsActive = podsOfJob(observed.pods, commitJobName(snap.metadata.name ?? "")).some(podIsActive);
    if (commitPodsActive) wait(RESYNC_WAITING_SECONDS);
    else {
      const d = unpauseDecision(snap, status, observed, cfg);
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
  const finalized = resumed && jobsGone && cleanupFinished && children.length === 0;
  if (!finalized && !jobsGone && resync === undefined) wait(RESYNC_WAITING_SECONDS);

  const res: SyncResponse = { status, children, finalized };
  if (!finalized && resync !== undefined) res.resyncAfterSeconds = resync;
  return res;
}
