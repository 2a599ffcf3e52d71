// The sync hook's decisions: a pure function of (request, config, clock, look-up results).
// Pending → Committing → Succeed | Failed; terminal phases never change. Everything learnt is carried
// forward in status, and a sync over an unchanged world returns the identical status.
import type {
  AgentSandbox,
  BatchSandbox,
  Job,
  Pod,
  SandboxSnapshot,
  SandboxSnapshotStatus,
  SyncRequest,
  SyncResponse,
} from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { commitJob, unpauseJob, type CommitTarget } from "../jobs/committer-job.js";
import { parseCommitResult, terminationMessage, truncate } from "./commit-result.js";
import { findCondition, formatTime, setCondition } from "./conditions.js";
import { foldCommitChecks, jobFinishedAt, recheckSucceed, verifiedStatus, verifyPendingStatus, VERIFY_DEADLINE_SECONDS, VERIFY_RETRY_SECONDS, type ImageCheckResults } from "./image-check.js";
import { batchSandboxOwner, imageReference, snapshotTag } from "./image-ref.js";
import { MAX_SNAPSHOT_NAME, commitJobName, unpauseJobName } from "./names.js";
import { findByName, jobFailureMessage, jobState, observe, podIsActive, podsOfJob, type Observed } from "./observe.js";
import { effectiveDeletionPolicy } from "./policy.js";
import { sandboxRefProblem } from "./sandbox-ref.js";
import { isRunningOnNode, resolveSource } from "./source.js";

/** Results of the shell's look-ups (time-bounded GETs), planned by planSyncLookups. */
export interface SyncLookups {
  /** BatchSandbox and pods fetched directly, when the related objects held no Running source. */
  source?: { batchSandboxes: BatchSandbox[]; pods: Pod[]; agentSandboxes?: AgentSandbox[] };
  /** Why the direct source look-up failed (API unreachable, no API configured). */
  sourceError?: string;
  /** Whether the configured push Secret exists in the snapshot's namespace. */
  pushSecret?: "present" | "absent";
  pushSecretError?: string;
  /** What the registry holds at the snapshot's references (planImageChecks in image-check.ts). */
  images?: ImageCheckResults;
}

export interface SyncLookupPlan {
  /** Look the BatchSandbox / Pod up directly: the cached customize answer may miss a later pod. */
  source: boolean;
  /** Name of the push Secret to check, if any. */
  pushSecret: string | undefined;
  /** For a spec.sandboxRef Sandbox source: the agents.x-k8s.io version to GET (AGENT_SANDBOX_API_VERSION). */
  agentSandboxVersion?: string;
}

export const RESYNC_WAITING_SECONDS = 10;
export const RESYNC_COMMITTING_SECONDS = 30;

interface Decision {
  status: SandboxSnapshotStatus;
  children: Job[];
  resyncAfterSeconds?: number;
}

/** What the shell must look up before calling sync (only a Pending snapshot needs anything). */
export function planSyncLookups(req: SyncRequest, cfg: ControllerConfig): SyncLookupPlan {
  const snap = req.parent;
  const phase = snap.status?.phase ?? "Pending";
  if (phase !== "Pending" || specProblem(snap) !== undefined) return { source: false, pushSecret: undefined };
  const observed = observe(req);
  const resolved = resolveSource(snap, observed.pods, observed.batchSandboxes, observed.agentSandboxes);
  const plan: SyncLookupPlan = { source: !resolved.found, pushSecret: cfg.pushSecret };
  if (snap.spec.sandboxRef !== undefined) plan.agentSandboxVersion = cfg.agentSandboxVersion;
  return plan;
}

export function sync(req: SyncRequest, cfg: ControllerConfig, now: Date, lookups: SyncLookups = {}): SyncResponse {
  const snap = req.parent;
  const observed = observe(req);
  const base = baseStatus(snap, now);
  const decision = decide(snap, base, observed, cfg, now, lookups);
  const res: SyncResponse = { status: decision.status, children: decision.children };
  if (decision.resyncAfterSeconds !== undefined) res.resyncAfterSeconds = decision.resyncAfterSeconds;
  return res;
}

function decide(
  snap: SandboxSnapshot,
  base: SandboxSnapshotStatus,
  observed: Observed,
  cfg: ControllerConfig,
  now: Date,
  lookups: SyncLookups,
): Decision {
  switch (base.phase) {
    case "Committing":
      return committing(snap, base, observed, cfg, now, lookups.images);
    case "Failed":
      return failed(snap, base, observed, cfg, now);
    case "Succeed":
      return { ...recheckSucceed(base, cfg, now, lookups.images), children: [] };
    default:
      return pending(snap, base, observed, cfg, now, lookups);
  }
}

/** The status carried forward, with the fields every phase sets the same way. */
function baseStatus(snap: SandboxSnapshot, now: Date): SandboxSnapshotStatus {
  const prev = snap.status ?? {};
  const status: SandboxSnapshotStatus = {
    ...prev,
    phase: prev.phase ?? "Pending",
    deletionPolicy: effectiveDeletionPolicy(snap),
    startTime: prev.startTime ?? formatTime(now),
  };
  if (snap.metadata.generation !== undefined) status.observedGeneration = snap.metadata.generation;
  return status;
}

// ---- Pending --------------------------------------------------------------------------------

/** A spec the API server should have rejected (CEL), checked again: old CRDs or other writers. */
export function specProblem(snap: SandboxSnapshot): string | undefined {
  const { sandboxName, podName, sandboxRef, containers } = snap.spec;
  if ([sandboxName, podName, sandboxRef].filter((s) => s !== undefined).length !== 1) {
    return "exactly one of spec.sandboxName, spec.podName or spec.sandboxRef must be set";
  }
  const refProblem = sandboxRef !== undefined ? sandboxRefProblem(sandboxRef) : undefined;
  if (refProblem !== undefined) return refProblem;
  const name = snap.metadata.name ?? "";
  if (name.length > MAX_SNAPSHOT_NAME) {
    return `metadata.name must be at most ${MAX_SNAPSHOT_NAME} characters (is ${name.length}) so '<name>-unpause' is a valid Job name`;
  }
  const dup = containers?.find((c, i) => containers.indexOf(c) !== i);
  if (dup !== undefined) return `spec.containers lists "${dup}" twice`;
  return undefined;
}

function fail(base: SandboxSnapshotStatus, now: Date, reason: string, message: string): SandboxSnapshotStatus {
  let conditions = setCondition(base.conditions, "Ready", "False", reason, message, now);
  conditions = setCondition(conditions, "Failed", "True", reason, message, now);
  return { ...base, phase: "Failed", conditions, completionTime: base.completionTime ?? formatTime(now) };
}

function waiting(base: SandboxSnapshotStatus, now: Date, reason: string, message: string, resync: number): Decision {
  const conditions = setCondition(base.conditions, "Ready", "False", reason, message, now);
  return { status: { ...base, phase: "Pending", conditions }, children: [], resyncAfterSeconds: resync };
}

function sourceDeadline(snap: SandboxSnapshot, base: SandboxSnapshotStatus, cfg: ControllerConfig): number {
  const created = Date.parse(snap.metadata.creationTimestamp ?? base.startTime ?? "");
  return (Number.isNaN(created) ? 0 : created) + cfg.sourceWaitSeconds * 1000;
}

function pending(
  snap: SandboxSnapshot,
  base: SandboxSnapshotStatus,
  observed: Observed,
  cfg: ControllerConfig,
  now: Date,
  lookups: SyncLookups,
): Decision {
  const problem = specProblem(snap);
  if (problem !== undefined) return { status: fail(base, now, "InvalidSpec", problem), children: [] };

  const pods = [...observed.pods, ...(lookups.source?.pods ?? [])];
  const batchSandboxes = [...observed.batchSandboxes, ...(lookups.source?.batchSandboxes ?? [])];
  const deadline = sourceDeadline(snap, base, cfg);
  const remaining = Math.ceil((deadline - now.getTime()) / 1000);
  const waitOrFail = (reason: string, message: string): Decision =>
    remaining <= 0
      ? {
          status: fail(base, now, reason, `${message}; gave up after ${cfg.sourceWaitSeconds}s (SOURCE_WAIT_SECONDS)`),
          children: [],
        }
      : waiting(base, now, reason, message, Math.min(RESYNC_WAITING_SECONDS, remaining));

  const agentSandboxes = [...observed.agentSandboxes, ...(lookups.source?.agentSandboxes ?? [])];
  const source = resolveSource(snap, pods, batchSandboxes, agentSandboxes);
  if (!source.found) {
    const note = lookups.sourceError !== undefined ? ` (direct look-up failed: ${lookups.sourceError})` : "";
    return waitOrFail(source.reason, source.message + note);
  }
  const podName = source.pod.metadata?.name ?? "";
  const podContainers = (source.pod.spec?.containers ?? []).map((c) => c.name);
  const wanted = snap.spec.containers ?? podContainers;
  const missingIndex = wanted.findIndex((c) => !podContainers.includes(c));
  if (missingIndex >= 0) {
    return {
      status: fail(
        base,
        now,
        "ContainerNotFound",
        `spec.containers[${missingIndex}]: container "${wanted[missingIndex] ?? ""}" is not in pod ${podName} (containers: ${podContainers.join(", ")})`,
      ),
      children: [],
    };
  }
  if (wanted.length === 0) {
    return { status: fail(base, now, "ContainerNotFound", `pod ${podName} has no containers to capture`), children: [] };
  }

  if (cfg.pushSecret !== undefined && lookups.pushSecret !== "present") {
    if (lookups.pushSecret === "absent") {
      return {
        status: fail(
          base,
          now,
          "PushSecretMissing",
          `Secret ${cfg.pushSecret} (SNAPSHOT_PUSH_SECRET) does not exist in namespace ${snap.metadata.namespace ?? ""}`,
        ),
        children: [],
      };
    }
    return waiting(
      base,
      now,
      "PushSecretUnverified",
      `could not check that Secret ${cfg.pushSecret} (SNAPSHOT_PUSH_SECRET) exists: ${lookups.pushSecretError ?? "not looked up"}`,
      RESYNC_WAITING_SECONDS,
    );
  }

  const owner = batchSandboxOwner(snap);
  let ownerGeneration: number | undefined;
  if (owner !== undefined) {
    ownerGeneration = findByName(batchSandboxes, owner.name)?.metadata?.generation;
    if (ownerGeneration === undefined) {
      return waitOrFail("OwnerNotFound", `owning BatchSandbox ${owner.name} is not readable, so the snap-gen tag is unknown`);
    }
  }
  const tag = snapshotTag(snap, ownerGeneration);
  const sourceName = snap.spec.sandboxName ?? snap.spec.podName ?? snap.spec.sandboxRef?.name ?? "";
  const targets: CommitTarget[] = [];
  for (const containerName of wanted) {
    const ref = imageReference(
      cfg.repositoryTemplate,
      { registry: cfg.registry, namespace: snap.metadata.namespace ?? "", source: sourceName, container: containerName },
      tag,
    );
    if (!ref.ok) return { status: fail(base, now, "InvalidImageReference", ref.message), children: [] };
    targets.push({ containerName, imageUri: ref.ref });
  }

  const nodeName = source.nodeName;
  const status: SandboxSnapshotStatus = {
    ...base,
    phase: "Committing",
    sourcePodName: podName,
    sourceNodeName: nodeName,
    containers: targets.map((t) => ({ containerName: t.containerName, imageUri: t.imageUri })),
    conditions: setCondition(
      base.conditions,
      "Ready",
      "False",
      "Committing",
      `commit Job ${commitJobName(snap.metadata.name ?? "")} runs on node ${nodeName}`,
      now,
    ),
  };
  return {
    status,
    children: [commitJob({ snapshot: snap, podName, nodeName, sourcePod: source.pod, targets }, cfg)],
    resyncAfterSeconds: RESYNC_COMMITTING_SECONDS,
  };
}

// ---- Committing -----------------------------------------------------------------------------

function targetsOf(status: SandboxSnapshotStatus): CommitTarget[] {
  return (status.containers ?? []).map((c) => ({ containerName: c.containerName, imageUri: c.imageUri ?? "" }));
}

export function commitJobFor(snap: SandboxSnapshot, status: SandboxSnapshotStatus, observed: Observed, cfg: ControllerConfig): Job {
  const podName = status.sourcePodName ?? "";
  return commitJob(
    {
      snapshot: snap,
      podName,
      nodeName: status.sourceNodeName ?? "",
      sourcePod: findByName(observed.pods, podName),
      targets: targetsOf(status),
    },
    cfg,
  );
}

function committing(
  snap: SandboxSnapshot,
  base: SandboxSnapshotStatus,
  observed: Observed,
  cfg: ControllerConfig,
  now: Date,
  images: ImageCheckResults | undefined,
): Decision {
  const jobName = commitJobName(snap.metadata.name ?? "");
  const job = findByName(observed.jobs, jobName);
  const state = jobState(job);
  const commit = commitJobFor(snap, base, observed, cfg);
  const keep: Decision = { status: base, children: [commit], resyncAfterSeconds: RESYNC_COMMITTING_SECONDS };
  const jobPods = podsOfJob(observed.pods, jobName);

  if (state === "succeeded") {
    const pod = jobPods.find((p) => p.status?.phase === "Succeeded") ?? jobPods[0];
    if (!pod) return { ...keep, resyncAfterSeconds: 5 }; // the pod's watch event has not arrived yet
    const result = parseCommitResult(terminationMessage(pod), targetsOf(base).map((t) => t.containerName));
    if (result.kind === "error") return keepUntilRecorded(failedCommit(snap, base, observed, cfg, now, "CommitFailed", result.error), commit);
    // The result is a claim: the registry decides (src/reconcile/image-check.ts).
    const verdict = foldCommitChecks(base, snap.metadata.uid ?? "", result, images, jobFinishedAt(job), now);
    switch (verdict.kind) {
      case "verified":
        return keepUntilRecorded(
          { status: verifiedStatus(base, verdict.containers, result.kind === "success" ? result.freezeMillis : undefined, cfg, now, verdict.recovered), children: [] },
          commit,
        );
      case "refused":
        return keepUntilRecorded(failedCommit(snap, base, observed, cfg, now, verdict.reason, verdict.message), commit);
      case "pending":
        if (verdict.expired) {
          const message = `${verdict.message}; gave up ${VERIFY_DEADLINE_SECONDS}s after the commit Job finished`;
          return keepUntilRecorded(failedCommit(snap, base, observed, cfg, now, "ImageVerificationTimedOut", message), commit);
        }
        return { status: verifyPendingStatus(base, verdict.message, now), children: [commit], resyncAfterSeconds: VERIFY_RETRY_SECONDS };
    }
  }
  if (state === "failed") {
    // Wait until no commit pod runs: only then can nothing freeze the sandbox again.
    if (jobPods.some(podIsActive)) return keep;
    const result = parseCommitResult(
      jobPods.map(terminationMessage).find((m) => m !== undefined),
      targetsOf(base).map((t) => t.containerName),
    );
    const detail = result.kind === "error" ? result.error : result.kind === "invalid" ? result.message : undefined;
    const message = `commit Job ${jobName} failed: ${jobFailureMessage(job)}${detail !== undefined ? `; committer: ${detail}` : ""}`;
    return keepUntilRecorded(failedCommit(snap, base, observed, cfg, now, "CommitFailed", truncate(message, 1500)), commit);
  }
  return keep;
}

/**
 * A finished Job stays among the children until the parent's stored status records its outcome.
 * Metacontroller may call sync with a stale parent right after writing the outcome; had the Job been
 * dropped already, that call would see `Committing` without a Job and create it again (a second freeze).
 * The Job is dropped by the first sync whose stored phase is terminal, and a watch cache never goes
 * back to an older version of the parent after that.
 */
function keepUntilRecorded(d: Decision, job: Job): Decision {
  return { ...d, children: [job, ...d.children.filter((c) => c.metadata.name !== job.metadata.name)], resyncAfterSeconds: 5 };
}

function failedCommit(
  snap: SandboxSnapshot,
  base: SandboxSnapshotStatus,
  observed: Observed,
  cfg: ControllerConfig,
  now: Date,
  reason: string,
  message: string,
): Decision {
  const status = fail(base, now, reason, message);
  // The committer may have died while the containers were paused: make sure they run again.
  status.conditions = setCondition(
    status.conditions,
    "ContainersResumed",
    "Unknown",
    "UnpauseRequired",
    "the commit failed; the source containers are being resumed",
    now,
  );
  return failed(snap, status, observed, cfg, now);
}

// ---- Failed ---------------------------------------------------------------------------------

export interface UnpauseDecision {
  /**
   * The unpause Job to return: while it runs, and once finished until the stored status records the
   * outcome (see keepUntilRecorded).
   */
  job: Job | undefined;
  /** The ContainersResumed condition's new status, when the question is settled. */
  settled?: { status: "True" | "False"; reason: string; message: string };
}

/** Runs the unpause Job while the source pod still runs on its node, until it completes or fails. */
export function unpauseDecision(snap: SandboxSnapshot, status: SandboxSnapshotStatus, observed: Observed, cfg: ControllerConfig): UnpauseDecision {
  const podName = status.sourcePodName ?? "";
  const nodeName = status.sourceNodeName ?? "";
  const pod = findByName(observed.pods, podName);
  if (!pod || !isRunningOnNode(pod) || pod.spec?.nodeName !== nodeName) {
    return {
      job: undefined,
      settled: { status: "True", reason: "SourceGone", message: `pod ${podName} no longer runs on node ${nodeName}; nothing is left frozen` },
    };
  }
  const jobName = unpauseJobName(snap.metadata.name ?? "");
  const state = jobState(findByName(observed.jobs, jobName));
  const containers = (status.containers ?? []).map((c) => c.containerName);
  const job = unpauseJob({ snapshot: snap, podName, nodeName, sourcePod: pod, containers }, cfg);
  if (state === "succeeded") {
    return { job, settled: { status: "True", reason: "Unpaused", message: `unpause Job ${jobName} resumed the containers` } };
  }
  if (state === "failed") {
    return {
      job,
      settled: {
        status: "False",
        reason: "UnpauseFailed",
        message: `unpause Job ${jobName} failed: ${jobFailureMessage(findByName(observed.jobs, jobName))}; check the containers of pod ${podName} on node ${nodeName}`,
      },
    };
  }
  return { job };
}

function failed(snap: SandboxSnapshot, base: SandboxSnapshotStatus, observed: Observed, cfg: ControllerConfig, now: Date): Decision {
  if (findCondition(base.conditions, "ContainersResumed")?.status !== "Unknown") return { status: base, children: [] };
  const d = unpauseDecision(snap, base, observed, cfg);
  if (d.settled) {
    // A finished unpause Job stays until the stored status records the outcome (keepUntilRecorded).
    const conditions = setCondition(base.conditions, "ContainersResumed", d.settled.status, d.settled.reason, d.settled.message, now);
    return d.job ? { status: { ...base, conditions }, children: [d.job], resyncAfterSeconds: 5 } : { status: { ...base, conditions }, children: [] };
  }
  return { status: base, children: d.job ? [d.job] : [], resyncAfterSeconds: RESYNC_COMMITTING_SECONDS };
}
