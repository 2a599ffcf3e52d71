// Registry clean-up of a deleted snapshot (pure). planCleanup decides what to delete in this call,
// the shell (src/server/cleanup-runner.ts) carries it out within a time bound, and foldCleanup turns
// the results into the status' `cleanup` part. Status changes only when an attempt is made: between
// attempts the stored status is returned as it is, with resyncAfterSeconds until the next one.
import type { CleanupStatus, SandboxSnapshot, SyncRequest } from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { isDigest, parseImageReference, ReferenceError } from "../registry/reference.js";
import { formatTime } from "./conditions.js";
import { truncate } from "./commit-result.js";
import { commitJobName } from "./names.js";
import { findByName, jobState, observe, podIsActive, trustedJobPods } from "./observe.js";
import { effectiveDeletionPolicy } from "./policy.js";
import type { FinalizeCleanup } from "./finalize.js";

/** Backoff between failed attempts: 5 s · 2^(attempts-1), at most 5 minutes. No jitter (pure). */
export const BACKOFF_INITIAL_SECONDS = 5;
export const BACKOFF_MAX_SECONDS = 300;
/** When a call ran out of its time budget before every manifest was tried, the next call comes soon. */
export const CONTINUE_AFTER_SECONDS = 1;
/** How often to look again while a commit is still in flight (it may still push). */
export const COMMIT_IN_FLIGHT_RESYNC_SECONDS = 10;
const MAX_ERROR_LENGTH = 512;

/** A manifest whose digest is recorded in status: deleted by digest (404 = already gone). */
export interface DigestTarget {
  readonly kind: "digest";
  /** `registry/repository@digest`: identifies the target in results and logs. */
  readonly ref: string;
  readonly registry: string;
  readonly repository: string;
  readonly digest: string;
  readonly containers: readonly string[];
}

/**
 * An image whose digest was never recorded (the commit died mid-push): looked up by tag and deleted
 * only when its manifest carries `annotation` = `uid` (this snapshot's), never otherwise.
 */
export interface TagTarget {
  readonly kind: "tag";
  /** `registry/repository:tag` */
  readonly ref: string;
  readonly registry: string;
  readonly repository: string;
  readonly tag: string;
  readonly containers: readonly string[];
}

export type CleanupTarget = DigestTarget | TagTarget;

export type CleanupPlan =
  /** Retain: the registry is not touched and no clean-up status is kept. */
  | { readonly action: "none"; readonly reason: "retain" }
  /** Done or Abandoned already: the stored status is final. */
  | { readonly action: "finished"; readonly cleanup: CleanupStatus }
  /** Not now: before the stored next attempt time, or while a commit may still push. */
  | {
      readonly action: "wait";
      readonly reason: "backoff" | "commit-in-flight";
      readonly cleanup: CleanupStatus | undefined;
      readonly resyncAfterSeconds: number;
    }
  /** Make an attempt: delete these manifests (possibly none). */
  | {
      readonly action: "attempt";
      readonly targets: readonly CleanupTarget[];
      /** The snapshot's UID: the value of the snapshot-uid annotation that marks a manifest as ours. */
      readonly uid: string;
      /** Entries of status.containers nothing can be done for (unparseable image reference). */
      readonly unusable: readonly { readonly containerName: string; readonly reason: string }[];
    };

/** What happened to one target in this call (the shell's answer, in any order). */
export type TargetResult =
  | { readonly ref: string; readonly outcome: "deleted"; readonly digest: string }
  /** 404: the manifest (or, for a tag target, the tag) does not exist: nothing left to delete. */
  | { readonly ref: string; readonly outcome: "not-found"; readonly digest?: string | undefined }
  /** A tag target whose manifest does not carry this snapshot's UID: not ours, left alone. */
  | { readonly ref: string; readonly outcome: "foreign"; readonly digest: string }
  /** 405 on DELETE: the registry cannot delete (deletion disabled, or refuses API deletes). */
  | { readonly ref: string; readonly outcome: "unsupported"; readonly message: string }
  /** Anything else (outage, timeout, 401/403, 5xx): retried with backoff. Message credential-free. */
  | { readonly ref: string; readonly outcome: "error"; readonly message: string }
  /** The call's time budget ran out before this target was tried. */
  | { readonly ref: string; readonly outcome: "not-attempted" };

export type AbandonReason = "deletion-unsupported" | "deadline";

export interface CleanupFold extends FinalizeCleanup {
  /** Set on the call that abandoned the clean-up (for the metric and the log line). */
  abandoned?: AbandonReason;
  /** Targets still to delete after this call (refs). */
  outstanding: string[];
}

/** Deadline of the clean-up: deletionTimestamp + CLEANUP_DEADLINE_SECONDS; undefined without one. */
export function cleanupDeadline(req: SyncRequest, cfg: ControllerConfig): Date | undefined {
  const deleted = Date.parse(req.parent.metadata.deletionTimestamp ?? "");
  if (Number.isNaN(deleted)) return undefined;
  return new Date(deleted + cfg.cleanupDeadlineSeconds * 1000);
}

function secondsUntil(t: number, now: Date): number {
  return Math.max(1, Math.ceil((t - now.getTime()) / 1000));
}

/** True while the commit Job runs or a commit pod is active: the committer may still push a manifest. */
function commitInFlight(req: SyncRequest, now: Date): boolean {
  const name = commitJobName(req.parent.metadata.name ?? "");
  const observed = observe(req);
  const job = findByName(observed.jobs, name);
  // Only pods the Job controls count (src/reconcile/observe.ts): a planted pod cannot hold clean-up up.
  const uid = req.parent.status?.commitJob?.uid ?? job?.metadata.uid;
  return jobState(job) === "running" || trustedJobPods(observed.pods, name, uid).pods.some((p) => podIsActive(p, now));
}

/** What the finalize hook should do about the registry in this call. */
export function planCleanup(req: SyncRequest, cfg: ControllerConfig, now: Date): CleanupPlan {
  const snap = req.parent;
  if (effectiveDeletionPolicy(snap) === "Retain") return { action: "none", reason: "retain" };
  const stored = snap.status?.cleanup;
  if (stored?.state === "Done" || stored?.state === "Abandoned") return { action: "finished", cleanup: stored };

  const deadline = cleanupDeadline(req, cfg);
  const pastDeadline = deadline !== undefined && now.getTime() > deadline.getTime();
  if (commitInFlight(req, now) && !pastDeadline) {
    return { action: "wait", reason: "commit-in-flight", cleanup: stored, resyncAfterSeconds: COMMIT_IN_FLIGHT_RESYNC_SECONDS };
  }
  const next = Date.parse(stored?.nextAttemptTime ?? "");
  if (!Number.isNaN(next) && next > now.getTime() && !pastDeadline) {
    return { action: "wait", reason: "backoff", cleanup: stored, resyncAfterSeconds: secondsUntil(next, now) };
  }

  const done = new Set(stored?.deletedDigests ?? []);
  const byRef = new Map<string, { target: CleanupTarget; containers: string[] }>();
  const unusable: { containerName: string; reason: string }[] = [];
  for (const c of snap.status?.containers ?? []) {
    if (c.imageUri === undefined || c.imageUri === "") {
      if (c.imageDigest !== undefined) unusable.push({ containerName: c.containerName, reason: "digest recorded without an image reference" });
      continue;
    }
    let parsed;
    try {
      parsed = parseImageReference(c.imageUri);
    } catch (err) {
      unusable.push({ containerName: c.containerName, reason: err instanceof ReferenceError ? err.message : String(err) });
      continue;
    }
    const digest = c.imageDigest ?? parsed.digest;
    let target: CleanupTarget;
    if (digest !== undefined) {
      if (!isDigest(digest)) {
        unusable.push({ containerName: c.containerName, reason: `imageDigest ${JSON.stringify(digest)} is not a digest` });
        continue;
      }
      if (done.has(digest)) continue;
      const ref = `${parsed.registry}/${parsed.repository}@${digest}`;
      target = { kind: "digest", ref, registry: parsed.registry, repository: parsed.repository, digest, containers: [] };
    } else {
      const tag = parsed.tag ?? "latest";
      const ref = `${parsed.registry}/${parsed.repository}:${tag}`;
      target = { kind: "tag", ref, registry: parsed.registry, repository: parsed.repository, tag, containers: [] };
    }
    const entry = byRef.get(target.ref) ?? { target, containers: [] };
    entry.containers.push(c.containerName);
    byRef.set(target.ref, entry);
  }
  const targets = [...byRef.values()].map(({ target, containers }) => ({ ...target, containers }));
  return { action: "attempt", targets, uid: snap.metadata.uid ?? "", unusable };
}

/** Delay before attempt `attempts + 1` after `attempts` attempts, in seconds. */
export function backoffSeconds(attempts: number): number {
  return Math.min(BACKOFF_MAX_SECONDS, BACKOFF_INITIAL_SECONDS * 2 ** Math.max(0, attempts - 1));
}

/** Folds the results of an attempt (none for other plans) into the clean-up part of status. */
export function foldCleanup(
  req: SyncRequest,
  cfg: ControllerConfig,
  now: Date,
  plan: CleanupPlan,
  results: readonly TargetResult[] = [],
): CleanupFold | undefined {
  switch (plan.action) {
    case "none":
      return undefined;
    case "finished":
      return { cleanup: plan.cleanup, finished: true, outstanding: [] };
    case "wait":
      return { cleanup: plan.cleanup, finished: false, resyncAfterSeconds: plan.resyncAfterSeconds, outstanding: [] };
    case "attempt":
      return foldAttempt(req, cfg, now, plan.targets, results);
  }
}

function foldAttempt(
  req: SyncRequest,
  cfg: ControllerConfig,
  now: Date,
  targets: readonly CleanupTarget[],
  results: readonly TargetResult[],
): CleanupFold {
  const prev = req.parent.status?.cleanup ?? {};
  const byRef = new Map(results.map((r) => [r.ref, r]));
  const deleted = [...(prev.deletedDigests ?? [])];
  const add = (d: string | undefined): void => {
    if (d !== undefined && !deleted.includes(d)) deleted.push(d);
  };
  const foreign = [...(prev.foreignDigests ?? [])];
  const outstanding: string[] = [];
  const errors: string[] = [];
  const unsupported: string[] = [];
  for (const t of targets) {
    const r = byRef.get(t.ref) ?? { ref: t.ref, outcome: "not-attempted" as const };
    switch (r.outcome) {
      case "deleted":
        add(r.digest);
        break;
      case "not-found":
        // A recorded digest that is gone counts as deleted; a tag that is gone leaves nothing behind.
        add(t.kind === "digest" ? t.digest : r.digest);
        break;
      case "foreign": {
        // Not ours: left in the registry, and said so in status.
        const f = `${t.registry}/${t.repository}@${r.digest}`;
        if (!foreign.includes(f)) foreign.push(f);
        break;
      }
      case "unsupported":
        outstanding.push(t.ref);
        unsupported.push(r.message);
        break;
      case "error":
        outstanding.push(t.ref);
        errors.push(r.message);
        break;
      case "not-attempted":
        outstanding.push(t.ref);
        break;
    }
  }
  const attempts = (prev.attempts ?? 0) + (targets.length > 0 ? 1 : 0);
  const base: CleanupStatus = { attempts, deletedDigests: deleted, ...(foreign.length > 0 ? { foreignDigests: foreign } : {}) };

  if (outstanding.length === 0) {
    return { cleanup: { state: "Done", ...base }, finished: true, outstanding };
  }
  if (unsupported.length > 0) {
    const lastError = truncate(
      `the registry refuses manifest deletes (HTTP 405: deletion disabled or not allowed through the API); abandoned ${outstanding.length} manifest(s), free them with the registry's own tools: ${unsupported[0] ?? ""}`,
      MAX_ERROR_LENGTH,
    );
    return { cleanup: { state: "Abandoned", ...base, lastError }, finished: true, abandoned: "deletion-unsupported", outstanding };
  }
  const deadline = cleanupDeadline(req, cfg);
  const lastError = errors[0] !== undefined ? truncate(errors[0], MAX_ERROR_LENGTH) : prev.lastError;
  if (deadline !== undefined && now.getTime() > deadline.getTime()) {
    const why = `clean-up deadline passed (CLEANUP_DEADLINE_SECONDS=${cfg.cleanupDeadlineSeconds} after deletion); abandoned ${outstanding.length} manifest(s)`;
    return {
      cleanup: { state: "Abandoned", ...base, lastError: truncate(lastError !== undefined ? `${why}; last error: ${lastError}` : why, MAX_ERROR_LENGTH) },
      finished: true,
      abandoned: "deadline",
      outstanding,
    };
  }
  // Errors back off exponentially; a call that merely ran out of time continues soon. The next
  // attempt is never put later than just after the deadline, so the deadline is honoured on time.
  let nextMs = now.getTime() + (errors.length > 0 ? backoffSeconds(attempts) : CONTINUE_AFTER_SECONDS) * 1000;
  if (deadline !== undefined) nextMs = Math.max(now.getTime() + 1000, Math.min(nextMs, deadline.getTime() + 1000));
  const nextAttemptTime = formatTime(new Date(Math.ceil(nextMs / 1000) * 1000));
  const cleanup: CleanupStatus = { state: "Pending", ...base, nextAttemptTime };
  if (lastError !== undefined) cleanup.lastError = lastError;
  return { cleanup, finished: false, resyncAfterSeconds: secondsUntil(Date.parse(nextAttemptTime), now), outstanding };
}

/**
 * Why the SandboxSnapshot as stored in the API server does not vouch for this finalize request
 * (undefined = it does): it must exist with the same UID, be being deleted, and record the same image
 * references and digests. A request that fails this deletes nothing, so a fabricated POST /finalize
 * cannot choose what is deleted.
 */
export function witnessProblem(req: SyncRequest, stored: SandboxSnapshot | undefined): string | undefined {
  const snap = req.parent;
  const who = `SandboxSnapshot ${snap.metadata.namespace ?? ""}/${snap.metadata.name ?? ""}`;
  if (stored === undefined) return `${who} does not exist in the API server`;
  if ((stored.metadata.uid ?? "") !== (snap.metadata.uid ?? "") || (snap.metadata.uid ?? "") === "") {
    return `${who} has UID ${stored.metadata.uid ?? "(none)"} in the API server, the request says ${snap.metadata.uid ?? "(none)"}`;
  }
  if (stored.metadata.deletionTimestamp === undefined) return `${who} is not being deleted in the API server`;
  const key = (c: { containerName: string; imageUri?: string | undefined; imageDigest?: string | undefined }): string =>
    `${c.containerName} ${c.imageUri ?? ""} ${c.imageDigest ?? ""}`;
  const recorded = new Set((stored.status?.containers ?? []).map(key));
  const claimed = (snap.status?.containers ?? []).find((c) => !recorded.has(key(c)));
  if (claimed !== undefined) {
    return truncate(`the request's image ${claimed.imageUri ?? ""} ${claimed.imageDigest ?? ""} (container ${claimed.containerName}) is not what ${who} records`, MAX_ERROR_LENGTH);
  }
  return undefined;
}
