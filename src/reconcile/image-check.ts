// The registry as witness (pure). A commit result is a claim made by a pod; what counts is the
// registry: a digest is recorded only when the manifest at the container's reference has it and
// carries this snapshot's UID annotation. planImageChecks says what the shell must read
// (src/server/image-verifier.ts does it, time-bounded), foldCommitChecks and recheckSucceed turn
// what it read into the status. A lost or cut result is recovered by tag the same way; a claim the
// registry does not back is refused; a registry that does not answer keeps the snapshot Committing
// and retries. Succeed snapshots are checked again every IMAGE_RECHECK_SECONDS (ImageAvailable).
import type { Job, SandboxSnapshotStatus, SyncRequest } from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { isDigest, parseImageReference } from "../registry/reference.js";
import { parseCommitResult, terminationMessage, truncate, type CommitResult } from "./commit-result.js";
import { findCondition, formatTime, setCondition } from "./conditions.js";
import { commitJobName } from "./names.js";
import { findByName, jobState, mergeByName, observe, trustedJobPods } from "./observe.js";
import type { SyncLookups } from "./sync.js";

/** One container's image to read. */
export interface ImageCheck {
  readonly containerName: string;
  /** The reference as recorded in status (repository:tag, or pinned repository:tag@digest). */
  readonly imageUri: string;
  readonly registry: string;
  readonly repository: string;
  /** Read the manifest at this tag (the commit's reference); undefined = do not. */
  readonly tag: string | undefined;
  /** Read the manifest with this digest (the result's claim, or the recorded digest). */
  readonly digest: string | undefined;
}

export interface ImageCheckPlan {
  /** commit: verify a finished commit before recording it; recheck: a Succeed snapshot's periodic check. */
  readonly purpose: "commit" | "recheck";
  readonly checks: readonly ImageCheck[];
}

/** What the registry holds under one reference. */
export type ManifestLookup =
  | { readonly outcome: "found"; readonly digest: string; readonly snapshotUid: string | undefined; readonly sizeBytes?: number | undefined }
  | { readonly outcome: "not-found" }
  /** Outage, timeout, 401/403, 5xx, time budget spent: credential-free message. */
  | { readonly outcome: "error"; readonly message: string };

export interface ImageCheckResult {
  readonly containerName: string;
  readonly atTag?: ManifestLookup | undefined;
  readonly atDigest?: ManifestLookup | undefined;
}

export interface ImageCheckResults {
  readonly purpose: ImageCheckPlan["purpose"];
  readonly results: readonly ImageCheckResult[];
}

/** While the registry does not answer, a finished commit is verified again this often. */
export const VERIFY_RETRY_SECONDS = 10;
/** A finished commit whose images could not be verified for this long fails (every wait has a bound). */
export const VERIFY_DEADLINE_SECONDS = 600;
/** A periodic check the registry did not answer is tried again after this (or the interval, if shorter). */
export const RECHECK_RETRY_SECONDS = 300;

const containerNames = (status: SandboxSnapshotStatus | undefined): string[] => (status?.containers ?? []).map((c) => c.containerName);

/**
 * The commit pod's result, read the way sync reads it: only from a pod the commit Job controls (the
 * Job recorded in status, else the observed one), among the related pods and those the look-ups
 * listed. A finished Job without such a pod counts as a missing result, which the registry may still
 * witness.
 */
export function commitResultOf(req: SyncRequest, lookups: Pick<SyncLookups, "commitPods"> = {}): CommitResult | undefined {
  const jobName = commitJobName(req.parent.metadata.name ?? "");
  const observed = observe(req);
  const job = findByName(observed.jobs, jobName);
  if (jobState(job) !== "succeeded") return undefined;
  const uid = req.parent.status?.commitJob?.uid ?? job?.metadata.uid;
  const pods = trustedJobPods(mergeByName(observed.pods, lookups.commitPods ?? []), jobName, uid, job).pods;
  const pod = pods.find((p) => p.status?.phase === "Succeeded") ?? pods[0];
  if (pod === undefined) return { kind: "missing" };
  return parseCommitResult(terminationMessage(pod), containerNames(req.parent.status));
}

function parsed(imageUri: string | undefined): { registry: string; repository: string; tag: string | undefined; digest: string | undefined } | undefined {
  if (imageUri === undefined || imageUri === "") return undefined;
  try {
    const r = parseImageReference(imageUri);
    return { registry: r.registry, repository: r.repository, tag: r.tag, digest: r.digest };
  } catch {
    return undefined;
  }
}

/** Whether (and which) images the shell must read before this sync; undefined = none. */
export function planImageChecks(req: SyncRequest, cfg: ControllerConfig, now: Date, lookups: Pick<SyncLookups, "commitPods"> = {}): ImageCheckPlan | undefined {
  const status = req.parent.status;
  if (status?.phase === "Committing") {
    const result = commitResultOf(req, lookups);
    if (result === undefined || result.kind === "error") return undefined;
    const claims = new Map(result.kind === "success" ? result.containers.map((c) => [c.name, c.digest]) : []);
    const checks: ImageCheck[] = [];
    for (const c of status.containers ?? []) {
      const ref = parsed(c.imageUri);
      if (ref === undefined) continue; // folded as refused: nothing to read
      checks.push({ containerName: c.containerName, imageUri: c.imageUri ?? "", registry: ref.registry, repository: ref.repository, tag: ref.tag ?? "latest", digest: claims.get(c.containerName) });
    }
    return { purpose: "commit", checks };
  }
  if (status?.phase === "Succeed" && recheckDue(status, cfg, now)) {
    const checks: ImageCheck[] = [];
    for (const c of status.containers ?? []) {
      const ref = parsed(c.imageUri);
      const digest = c.imageDigest ?? ref?.digest;
      if (ref === undefined || digest === undefined || !isDigest(digest)) continue;
      checks.push({ containerName: c.containerName, imageUri: c.imageUri ?? "", registry: ref.registry, repository: ref.repository, tag: undefined, digest });
    }
    return checks.length > 0 ? { purpose: "recheck", checks } : undefined;
  }
  return undefined;
}

function recheckDue(status: SandboxSnapshotStatus, cfg: ControllerConfig, now: Date): boolean {
  if (cfg.imageRecheckSeconds === 0) return false;
  const next = Date.parse(status.imageCheck?.nextCheckTime ?? "");
  return Number.isNaN(next) || next <= now.getTime();
}

// ---- a finished commit ------------------------------------------------------------------------

export interface VerifiedImage {
  readonly name: string;
  readonly digest: string;
  readonly sizeBytes?: number | undefined;
}

export type CommitVerdict =
  | { readonly kind: "verified"; readonly containers: readonly VerifiedImage[]; readonly recovered: boolean }
  /** The registry does not back the result (forged, or lost and not in the registry): Failed. */
  | { readonly kind: "refused"; readonly reason: string; readonly message: string }
  /** The registry did not answer: stay Committing, try again. */
  | { readonly kind: "pending"; readonly message: string; readonly expired: boolean };

function describe(l: ManifestLookup | undefined): string {
  if (l === undefined || l.outcome === "not-found") return "no manifest";
  if (l.outcome === "error") return `an error (${l.message})`;
  return `manifest ${l.digest}${l.snapshotUid === undefined ? " without a snapshot-uid annotation" : ""}`;
}

const ours = (l: ManifestLookup | undefined, uid: string): l is Extract<ManifestLookup, { outcome: "found" }> =>
  l?.outcome === "found" && uid !== "" && l.snapshotUid === uid;

/** When the commit Job finished (its completionTime, else its Complete condition's time). */
export function jobFinishedAt(job: Job | undefined): number | undefined {
  const t = job?.status?.completionTime;
  const cond = job?.status?.conditions?.find((c) => c.type === "Complete" && c.status === "True");
  const at = Date.parse(typeof t === "string" ? t : typeof cond?.lastTransitionTime === "string" ? cond.lastTransitionTime : "");
  return Number.isNaN(at) ? undefined : at;
}

/**
 * The verdict on a finished commit whose result is a success claim, missing or not a result
 * (`result` kinds other than error), from what the shell read (`checks`; undefined = not read).
 */
export function foldCommitChecks(
  status: SandboxSnapshotStatus,
  uid: string,
  result: Exclude<CommitResult, { kind: "error" }>,
  checks: ImageCheckResults | undefined,
  finishedAt: number | undefined,
  now: Date,
): CommitVerdict {
  const expired = finishedAt !== undefined && now.getTime() - finishedAt > VERIFY_DEADLINE_SECONDS * 1000;
  const claims = new Map(result.kind === "success" ? result.containers.map((c) => [c.name, c]) : []);
  const recovered = result.kind !== "success";
  const byName = new Map((checks?.purpose === "commit" ? checks.results : []).map((r) => [r.containerName, r]));
  const verified: VerifiedImage[] = [];
  const errors: string[] = [];
  for (const c of status.containers ?? []) {
    const ref = c.imageUri ?? "";
    if (parsed(c.imageUri) === undefined) {
      return { kind: "refused", reason: "CommitResultUnverified", message: `container ${c.containerName} has no valid image reference to verify (${JSON.stringify(ref)})` };
    }
    const claim = claims.get(c.containerName);
    if (result.kind === "success" && claim === undefined) {
      return { kind: "refused", reason: "CommitResultInvalid", message: `committer result has no digest for container ${c.containerName}` };
    }
    const r = byName.get(c.containerName);
    if (r === undefined) {
      errors.push(`${ref} not read yet`);
      continue;
    }
    const atTag = r.atTag;
    if (claim !== undefined) {
      const atDigest = r.atDigest ?? (atTag?.outcome === "found" && atTag.digest === claim.digest ? atTag : undefined);
      if (ours(atTag, uid) && atTag.digest === claim.digest) {
        verified.push({ name: c.containerName, digest: claim.digest, sizeBytes: claim.sizeBytes ?? atTag.sizeBytes });
        continue;
      }
      // The tag may have moved since (another push to it): the claimed manifest itself still counts.
      if (ours(atDigest, uid) && atDigest.digest === claim.digest) {
        verified.push({ name: c.containerName, digest: claim.digest, sizeBytes: claim.sizeBytes ?? atDigest.sizeBytes });
        continue;
      }
      if (atTag?.outcome === "error" || atDigest?.outcome === "error") {
        errors.push(`${ref}: ${atTag?.outcome === "error" ? atTag.message : atDigest?.outcome === "error" ? atDigest.message : ""}`);
        continue;
      }
      return {
        kind: "refused",
        reason: "CommitResultUnverified",
        message: truncate(
          `the commit result claims digest ${claim.digest} for container ${c.containerName}, but the registry does not back it: ${ref} has ${describe(atTag)}, ${claim.digest} is ${describe(atDigest)}; a manifest counts only with this snapshot's UID annotation (${uid})`,
          1000,
        ),
      };
    }
    // No usable result: the manifest at the tag is the witness, if it is ours.
    if (ours(atTag, uid)) {
      verified.push({ name: c.containerName, digest: atTag.digest, sizeBytes: atTag.sizeBytes });
      continue;
    }
    if (atTag?.outcome === "error") {
      errors.push(`${ref}: ${atTag.message}`);
      continue;
    }
    const why = result.kind === "invalid" ? `left no usable result (${result.message})` : "left no result";
    return {
      kind: "refused",
      reason: "CommitResultMissing",
      message: truncate(`the commit pod ${why}, and ${ref} has ${describe(atTag)} carrying this snapshot's UID annotation`, 1000),
    };
  }
  if (errors.length > 0) {
    return { kind: "pending", message: truncate(`could not verify the pushed images in the registry: ${errors[0] ?? ""}`, 1000), expired };
  }
  return { kind: "verified", containers: verified, recovered };
}

/** `repository:tag` → `repository:tag@digest` (an already pinned reference keeps its tag). */
export function pinnedReference(imageUri: string, digest: string): string {
  const at = imageUri.indexOf("@");
  return `${at === -1 ? imageUri : imageUri.slice(0, at)}@${digest}`;
}

function nextCheck(cfg: ControllerConfig, now: Date, afterSeconds: number): SandboxSnapshotStatus["imageCheck"] | undefined {
  if (cfg.imageRecheckSeconds === 0) return undefined;
  return { nextCheckTime: formatTime(new Date(Math.ceil(now.getTime() / 1000) * 1000 + afterSeconds * 1000)) };
}

/** The Succeed status for verified images: digests recorded, references pinned, ImageAvailable True. */
export function verifiedStatus(
  base: SandboxSnapshotStatus,
  images: readonly VerifiedImage[],
  freezeMillis: number | undefined,
  cfg: ControllerConfig,
  now: Date,
  recovered: boolean,
): SandboxSnapshotStatus {
  const containers = (base.containers ?? []).map((c) => {
    const v = images.find((x) => x.name === c.containerName);
    if (v === undefined) return c;
    return { ...c, imageUri: pinnedReference(c.imageUri ?? "", v.digest), imageDigest: v.digest, ...(v.sizeBytes !== undefined ? { sizeBytes: v.sizeBytes } : {}) };
  });
  const how = recovered ? " (result recovered from the registry)" : "";
  let conditions = setCondition(base.conditions, "Ready", "True", "Succeeded", `${containers.length} image(s) pushed and verified in the registry${how}`, now);
  conditions = setCondition(conditions, "ImageAvailable", "True", "Verified", `the registry holds the manifest of each of ${containers.length} image(s) with this snapshot's UID`, now);
  const status: SandboxSnapshotStatus = { ...base, phase: "Succeed", containers, completionTime: formatTime(now), conditions };
  if (freezeMillis !== undefined) status.freezeMillis = freezeMillis;
  const check = nextCheck(cfg, now, cfg.imageRecheckSeconds);
  if (check !== undefined) status.imageCheck = check;
  return status;
}

/** The Committing status while the registry does not answer (same world, same status). */
export function verifyPendingStatus(base: SandboxSnapshotStatus, message: string, now: Date): SandboxSnapshotStatus {
  return { ...base, conditions: setCondition(base.conditions, "Ready", "False", "RegistryUnavailable", `the commit Job finished; ${message}; retrying`, now) };
}

// ---- a Succeed snapshot's periodic check --------------------------------------------------------

/**
 * The Succeed status after a periodic check (`checks` from the shell; undefined when none was due).
 * ImageAvailable changes only when availability does; the next check time moves on each attempt.
 */
export function recheckSucceed(
  base: SandboxSnapshotStatus,
  cfg: ControllerConfig,
  now: Date,
  checks: ImageCheckResults | undefined,
): { status: SandboxSnapshotStatus; resyncAfterSeconds?: number } {
  const untilNext = (s: SandboxSnapshotStatus): number | undefined => {
    if (cfg.imageRecheckSeconds === 0) return undefined;
    const next = Date.parse(s.imageCheck?.nextCheckTime ?? "");
    return Number.isNaN(next) ? undefined : Math.max(1, Math.ceil((next - now.getTime()) / 1000));
  };
  if (checks?.purpose !== "recheck") {
    const r = untilNext(base);
    return r === undefined ? { status: base } : { status: base, resyncAfterSeconds: r };
  }
  const missing: string[] = [];
  const errors: string[] = [];
  for (const r of checks.results) {
    const l = r.atDigest;
    if (l?.outcome === "found") continue;
    const c = (base.containers ?? []).find((x) => x.containerName === r.containerName);
    const ref = pinnedReference(c?.imageUri ?? "", c?.imageDigest ?? "");
    if (l?.outcome === "error") errors.push(`${ref}: ${l.message}`);
    else missing.push(`${ref} (container ${r.containerName})`);
  }
  let status: SandboxSnapshotStatus = base;
  if (missing.length > 0) {
    const message = truncate(
      `${missing.length} manifest(s) no longer in the registry (deleted, or removed by its garbage collection): ${missing.join(", ")}; resuming from this snapshot will fail`,
      1000,
    );
    status = { ...base, conditions: setCondition(base.conditions, "ImageAvailable", "False", "ManifestNotFound", message, now) };
  } else if (errors.length === 0) {
    const prev = findCondition(base.conditions, "ImageAvailable");
    // Availability unchanged: keep the condition as it is (message included), so the status is stable.
    if (prev?.status !== "True") {
      const n = checks.results.length;
      status = { ...base, conditions: setCondition(base.conditions, "ImageAvailable", "True", "Verified", `the registry holds the manifest of each of ${n} image(s) with this snapshot's UID`, now) };
    }
  }
  // An unanswered check leaves ImageAvailable as it was and is tried again sooner.
  const after = errors.length > 0 && missing.length === 0 ? Math.min(RECHECK_RETRY_SECONDS, cfg.imageRecheckSeconds) : cfg.imageRecheckSeconds;
  const check = nextCheck(cfg, now, after);
  if (check !== undefined) status = { ...status, imageCheck: check };
  const r = untilNext(status);
  return r === undefined ? { status } : { status, resyncAfterSeconds: r };
}
