// How long each non-terminal state may last before the core ends it (docs/architecture.md "Bounded
// waits"). Every wait the hooks do has one of these bounds, measured from a time an object carries
// (the Job's creation or completion, a pod's deletionTimestamp, the snapshot's deletion), never from a
// counter in status, so a repeated sync over the same world gives the same answer.

/** A commit Job whose controller has created no pod (e.g. Pod Security refuses it): then Failed. */
export const JOB_WITHOUT_POD_SECONDS = 120;

/** A Complete commit Job whose pod (and so its result) cannot be found: then the result is lost. */
export const RESULT_WAIT_SECONDS = 60;

/**
 * A pod past its deletionTimestamp by this much is taken as gone: its node stopped reporting, so the
 * kubelet will never confirm the kill (the committer's watchdog resumes the containers on its own).
 */
export const TERMINATING_POD_SECONDS = 90;

/** A commit Job still not terminal this long after its activeDeadlineSeconds ran out: then Failed. */
export const COMMIT_OVERRUN_SECONDS = 120;

/** During finalize: how long after the deletion a commit pod still running is waited for. */
export const FINALIZE_COMMIT_WAIT_SECONDS = 180;

/** Age of a time stamp in seconds at `now`; undefined when it is missing or unreadable. */
export function secondsSince(stamp: string | null | undefined, now: Date): number | undefined {
  if (stamp === undefined || stamp === null || stamp === "") return undefined;
  const t = Date.parse(stamp);
  return Number.isNaN(t) ? undefined : (now.getTime() - t) / 1000;
}
