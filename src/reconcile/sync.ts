// The sync hook's decisions: a pure function of (request, config, clock, look-up results).
// Pending → Committing → Succeed | Failed; terminal phases never change. Everything learnt is carried
// forward in status, and a sync over an unchanged world returns the identical status.
//
// The hook runs as gather → decide → act: the shell gathers what planSyncLookups asks for (bounded
// API reads), decideSync decides status, children and the Events to emit, and the shell acts on that
// answer. Only objects their controller owns are believed (src/reconcile/observe.ts); what else the
// request or the look-ups hold is reported as ignored and changes nothing.
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
import {
  COMMIT_OVERRUN_SECONDS,
  JOB_WITHOUT_POD_SECONDS,
  RESULT_WAIT_SECONDS,
  TERMINATING_POD_SECONDS,
  secondsSince,
} from "./bounds.js";
import { parseCommitResult, terminationMessage, truncate, type CommitResult } from "./commit-result.js";
import { findCondition, formatTime, setCondition } from "./conditions.js";
import { transitionEvents, type SnapshotEvent } from "./events.js";
import { foldCommitChecks, jobFinishedAt, recheckSucceed, verifiedStatus, verifyPendingStatus, VERIFY_DEADLINE_SECONDS, VERIFY_RETRY_SECONDS, type ImageCheckResults } from "./image-check.js";
import { batchSandboxOwner, imageReference, snapshotTag } from "./image-ref.js";
import { LABEL_CONTROLLER_UID_NEW, MAX_SNAPSHOT_NAME, commitJobName, unpauseJobName } from "./names.js";
import {
  findByName,
  jobCondition,
  jobFailureMessage,
  jobHadPods,
  jobState,
  mergeByName,
  observe,
  podIsActive,
  trustedJobPods,
  type Ignored,
  type Observed,
} from "./observe.js";
import { effectiveDeletionPolicy } from "./policy.js";
import { sandboxRefProblem } from "./sandbox-ref.js";
import { isRunningOnNode, resolveSource } from "./source.js";

/** An Event the Job controller (or anyone) recorded about the commit Job: why it has no pod. */
export interface JobEvent {
  reason: string;
  message: string;
}

/** Results of the shell's look-ups (time-bounded API reads), planned by planSyncLookups. */
export interface SyncLookups {
  /** BatchSandbox and pods fetched directly (by name and by the BatchSandbox label, bounded); a Sandbox source's Sandbox. */
  source?: { batchSandboxes: BatchSandbox[]; pods: Pod[]; agentSandboxes?: AgentSandbox[] };
  /** Why the direct source look-up failed (API unreachable, no API configured). */
  sourceError?: string;
  /** Whether the configured push Secret exists in the snapshot's namespace. */
  pushSecret?: "present" | "absent";
  pushSecretError?: string;
  /** Pods listed by the commit Job's selector (bounded); the core keeps those the Job controls. */
  commitPods?: Pod[];
  commitPodsError?: string;
  /** The recorded source pod, read fresh by name: null when it does not exist. */
  sourcePod?: Pod | null;
  sourcePodError?: string;
  /** Events about the commit Job while it has no pod, newest first. */
  commitJobEvents?: JobEvent[];
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
  /** List the pods of the commit Job (label selector `selector`, bounded) that has this UID. */
  commitPods?: { uid: string; selector: string };
  /** GET the recorded source pod by name (unpause decisions, the commit Job's tolerations). */
  sourcePod?: string;
  /** List the Events of the commit Job: it has no pod, the Events say why. */
  commitJobEvents?: { name: string; uid: string };
}

/** A hook's whole decision: the answer for Metacontroller, the Events to emit, what was ignored. */
export interface Decided {
  response: SyncResponse;
  events: SnapshotEvent[];
  ignored: Ignored[];
}

export const RESYNC_WAITING_SECONDS = 10;
export const RESYNC_COMMITTING_SECONDS = 30;

interface Decision {
  status: SandboxSnapshotStatus;
  children: Job[];
  resyncAfterSeconds?: number;
}

interface Ctx {
  snap: SandboxSnapshot;
  observed: Observed;
  cfg: ControllerConfig;
  now: Date;
  lookups: SyncLookups;
  ignored: Ignored[];
}

/** The commit Job's label selector: the one the Job carries, else the Job controller's UID label. */
export function jobPodSelector(job: Job | undefined, uid: string): string {
  const matchLabels = (job?.spec as { selector?: { matchLabels?: Record<string, unknown> } } | undefined)?.selector?.matchLabels;
  const pairs = Object.entries(matchLabels ?? {}).filter((e): e is [string, string] => typeof e[1] === "string");
  if (pairs.length > 0 && job?.metadata.uid === uid) return pairs.map(([k, v]) => `${k}=${v}`).join(",");
  return `${LABEL_CONTROLLER_UID_NEW}=${uid}`;
}

/** The commit Job's UID: as recorded in status, else as observed. */
export function commitJobUid(snap: SandboxSnapshot, observed: Observed): string | undefined {
  const recorded = snap.status?.commitJob?.uid;
  if (recorded !== undefined && recorded !== "") return recorded;
  const uid = findByName(observed.jobs, commitJobName(snap.metadata.name ?? ""))?.metadata.uid;
  return uid !== undefined && uid !== "" ? uid : undefined;
}

/** Reads the commit Job needs in Committing, and the unpause decision needs while it is open. */
export function planJobLookups(snap: SandboxSnapshot, observed: Observed): Omit<SyncLookupPlan, "source" | "pushSecret"> {
  const plan: Omit<SyncLookupPlan, "source" | "pushSecret"> = {};
  const job = findByName(observed.jobs, commitJobName(snap.metadata.name ?? ""));
  const uid = commitJobUid(snap, observed);
  if (uid !== undefined) plan.commitPods = { uid, selector: jobPodSelector(job, uid) };
  if (snap.status?.sourcePodName !== undefined && snap.status.sourcePodName !== "") plan.sourcePod = snap.status.sourcePodName;
  if (job?.metadata.uid !== undefined && jobState(job) === "running" && !jobHadPods(job)) {
    plan.commitJobEvents = { name: job.metadata.name ?? "", uid: job.metadata.uid };
  }
  return plan;
}

/** What the shell must look up before calling sync. */
export function planSyncLookups(req: SyncRequest, cfg: ControllerConfig): SyncLookupPlan {
  const snap = req.parent;
  const phase = snap.status?.phase ?? "Pending";
  const observed = observe(req);
  if (phase === "Committing") return { source: false, pushSecret: undefined, ...planJobLookups(snap, observed) };
  if (phase === "Failed" && findCondition(snap.status?.conditions, "ContainersResumed")?.status === "Unknown") {
    const { sourcePod } = planJobLookups(snap, observed);
    return { source: false, pushSecret: undefined, ...(sourcePod !== undefined ? { sourcePod } : {}) };
  }
  if (phase !== "Pending" || specProblem(snap) !== undefined) return { source: false, pushSecret: undefined };
  const resolved = resolveSource(snap, observed.pods, observed.batchSandboxes, observed.agentSandboxes);
  const plan: SyncLookupPlan = { source: !resolved.found, pushSecret: cfg.pushSecret };
  if (snap.spec.sandboxRef !== undefined) plan.agentSandboxVersion = cfg.agentSandboxVersion;
  return plan;
}

/** The whole sync decision: status, children, Events, ignored objects. */
export function decideSync(req: SyncRequest, cfg: ControllerConfig, now: Date, lookups: SyncLookups = {}): Decided {
  const snap = req.parent;
  const ctx: Ctx = { snap, observed: observe(req), cfg, now, lookups, ignored: [] };
  const base = baseStatus(snap, now);
  const decision = decide(ctx, base);
  const response: SyncResponse = { status: decision.status, children: decision.children };
  if (decision.resyncAfterSeconds !== undefined) response.resyncAfterSeconds = decision.resyncAfterSeconds;
  return { response, events: transitionEvents(snap.status, decision.status), ignored: uniqueIgnored(ctx.ignored) };
}

export function sync(req: SyncRequest, cfg: ControllerConfig, now: Date, lookups: SyncLookups = {}): SyncResponse {
  return decideSync(req, cfg, now, lookups).response;
}

export function uniqueIgnored(list: readonly Ignored[]): Ignored[] {
  const seen = new Map<string, Ignored>();
  for (const i of list) seen.set(`${i.kind}/${i.name}/${i.uid ?? ""}`, i);
  return [...seen.values()];
}

function decide(ctx: Ctx, base: SandboxSnapshotStatus): Decision {
  switch (base.phase) {
    case "Committing":
      return committing(ctx, base);
    case "Failed":
      return failed(ctx, base);
    case "Succeed":
      return { ...recheckSucceed(base, ctx.cfg, ctx.now, ctx.lookups.images), children: [] };
    default:
      return pending(ctx, base);
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

function pending(ctx: Ctx, base: SandboxSnapshotStatus): Decision {
  const { snap, observed, cfg, now, lookups } = ctx;
  const problem = specProblem(snap);
  if (problem !== undefined) return { status: fail(base, now, "InvalidSpec", problem), children: [] };

  const pods = mergeByName(observed.pods, lookups.source?.pods ?? []);
  const batchSandboxes = mergeByName(observed.batchSandboxes, lookups.source?.batchSandboxes ?? []);
  const deadline = sourceDeadline(snap, base, cfg);
  const remaining = Math.ceil((deadline - now.getTime()) / 1000);
  const waitOrFail = (reason: string, message: string): Decision =>
    remaining <= 0
      ? {
          status: fail(base, now, reason, `${message}; gave up after ${cfg.sourceWaitSeconds}s (SOURCE_WAIT_SECONDS)`),
          children: [],
        }
      : waiting(base, now, reason, message, Math.min(RESYNC_WAITING_SECONDS, remaining));

  const agentSandboxes = mergeByName(observed.agentSandboxes, lookups.source?.agentSandboxes ?? []);
  const source = resolveSource(snap, pods, batchSandboxes, agentSandboxes);
  ctx.ignored.push(...(source.ignored ?? []));
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
    ...(source.pod.metadata?.uid !== undefined ? { sourcePodUID: source.pod.metadata.uid } : {}),
    containers: targets.map((t) => ({ containerName: t.containerName, imageUri: t.imageUri })),
    conditions: setCondition(
      base.conditions,
      "Ready",
      "False",
      "Committing",
      `creating commit Job ${commitJobName(snap.metadata.name ?? "")} on node ${nodeName}`,
      now,
    ),
  };
  return {
    status,
    children: [commitJob({ snapshot: snap, podName, sourcePodUid: source.pod.metadata?.uid, nodeName, sourcePod: source.pod, targets }, cfg)],
    resyncAfterSeconds: RESYNC_COMMITTING_SECONDS,
  };
}

// ---- Committing -----------------------------------------------------------------------------

function targetsOf(status: SandboxSnapshotStatus): CommitTarget[] {
  return (status.containers ?? []).map((c) => ({ containerName: c.containerName, imageUri: c.imageUri ?? "" }));
}

/** The recorded source pod as best known: the fresh read when it was made, else the related copy. */
function knownSourcePod(ctx: Ctx, status: SandboxSnapshotStatus): Pod | undefined {
  const name = status.sourcePodName ?? "";
  const fresh = ctx.lookups.sourcePod;
  const pod = fresh === null ? undefined : (fresh ?? findByName(ctx.observed.pods, name));
  if (pod === undefined || pod.metadata?.name !== name) return undefined;
  const uid = status.sourcePodUID;
  return uid === undefined || pod.metadata.uid === uid ? pod : undefined;
}

export function commitJobFor(snap: SandboxSnapshot, status: SandboxSnapshotStatus, sourcePod: Pod | undefined, cfg: ControllerConfig): Job {
  return commitJob(
    {
      snapshot: snap,
      podName: status.sourcePodName ?? "",
      sourcePodUid: status.sourcePodUID,
      nodeName: status.sourceNodeName ?? "",
      sourcePod,
      targets: targetsOf(status),
    },
    cfg,
  );
}

/** The commit Job's pods that count (controlled by the Job with `uid`); the rest goes to ctx.ignored. */
function commitPodsOf(ctx: Ctx, uid: string | undefined): Pod[] {
  const jobName = commitJobName(ctx.snap.metadata.name ?? "");
  const job = findByName(ctx.observed.jobs, jobName);
  const t = trustedJobPods(mergeByName(ctx.observed.pods, ctx.lookups.commitPods ?? []), jobName, uid, job);
  ctx.ignored.push(...t.ignored);
  return t.pods;
}

function withReady(status: SandboxSnapshotStatus, reason: string, message: string, now: Date): SandboxSnapshotStatus {
  return { ...status, conditions: setCondition(status.conditions, "Ready", "False", reason, message, now) };
}

function committing(ctx: Ctx, base: SandboxSnapshotStatus): Decision {
  const { snap, observed, cfg, now } = ctx;
  const jobName = commitJobName(snap.metadata.name ?? "");
  const job = findByName(observed.jobs, jobName);
  const recorded = base.commitJob?.uid;
  const observedUid = job?.metadata.uid;

  // Status remembers the Job once seen: its disappearance then ends the commit (never a second freeze).
  if (recorded !== undefined && (job === undefined || observedUid !== recorded || (job.metadata.deletionTimestamp ?? "") !== "")) {
    return commitJobGone(ctx, base, recorded);
  }
  let status = base;
  if (recorded === undefined && observedUid !== undefined && observedUid !== "" && (job?.metadata.deletionTimestamp ?? "") === "") {
    status = { ...base, commitJob: { uid: observedUid } };
  }
  const uid = status.commitJob?.uid;
  const jobPods = commitPodsOf(ctx, uid);
  const commit = commitJobFor(snap, status, knownSourcePod(ctx, status), cfg);
  const keep = (s: SandboxSnapshotStatus, resync = RESYNC_COMMITTING_SECONDS): Decision => ({ status: s, children: [commit], resyncAfterSeconds: resync });
  const state = jobState(job);
  const nodeName = status.sourceNodeName ?? "";

  if (!job) return keep(withReady(status, "Committing", `creating commit Job ${jobName} on node ${nodeName}`, now), RESYNC_WAITING_SECONDS);

  if (state === "succeeded") {
    const pod = jobPods.find((p) => p.status?.phase === "Succeeded") ?? jobPods[0];
    let result: CommitResult;
    if (!pod) {
      // The pod (and the result in its termination message) may not be observed yet, or may be gone.
      const completed = job.status?.completionTime ?? jobCondition(job, "Complete")?.lastTransitionTime ?? job.metadata.creationTimestamp;
      const age = secondsSince(completed, now);
      if (age === undefined || age < RESULT_WAIT_SECONDS) {
        const left = Math.ceil(RESULT_WAIT_SECONDS - (age ?? 0));
        return keep(
          withReady(status, "CommitResultPending", `commit Job ${jobName} completed; reading the result from its pod (gives up after ${RESULT_WAIT_SECONDS}s)`, now),
          Math.max(1, Math.min(5, left)),
        );
      }
      // The result is lost with its pod: the registry may still witness the push (below).
      result = { kind: "missing" };
    } else {
      result = parseCommitResult(terminationMessage(pod), targetsOf(status).map((t) => t.containerName));
    }
    if (result.kind === "error") return keepUntilRecorded(failedCommit(ctx, status, "CommitFailed", result.error), commit);
    // The result is a claim: the registry decides (src/reconcile/image-check.ts).
    const verdict = foldCommitChecks(status, snap.metadata.uid ?? "", result, ctx.lookups.images, jobFinishedAt(job), now);
    switch (verdict.kind) {
      case "verified":
        return keepUntilRecorded(
          { status: verifiedStatus(status, verdict.containers, result.kind === "success" ? result.freezeMillis : undefined, cfg, now, verdict.recovered), children: [] },
          commit,
        );
      case "refused": {
        const why = !pod && ctx.lookups.commitPodsError !== undefined ? ` (listing the commit pods failed: ${ctx.lookups.commitPodsError})` : "";
        return keepUntilRecorded(failedCommit(ctx, status, verdict.reason, `${verdict.message}${why}`), commit);
      }
      case "pending":
        if (verdict.expired) {
          const message = `${verdict.message}; gave up ${VERIFY_DEADLINE_SECONDS}s after the commit Job finished`;
          return keepUntilRecorded(failedCommit(ctx, status, "ImageVerificationTimedOut", message), commit);
        }
        return { status: verifyPendingStatus(status, verdict.message, now), children: [commit], resyncAfterSeconds: VERIFY_RETRY_SECONDS };
    }
  }

  const active = jobPods.filter((p) => podIsActive(p, now));
  // The last bound: the Job's own deadline plus slack, whatever its pods report.
  const overrun = (secondsSince(job.metadata.creationTimestamp, now) ?? 0) - cfg.commitJobDeadlineSeconds;
  if (overrun >= COMMIT_OVERRUN_SECONDS) {
    return keepUntilRecorded(
      failedCommit(
        ctx,
        status,
        "CommitTimedOut",
        `commit Job ${jobName} did not finish within its deadline (COMMIT_JOB_DEADLINE_SECONDS=${cfg.commitJobDeadlineSeconds}) plus ${COMMIT_OVERRUN_SECONDS}s${active.length > 0 ? `; pod ${active[0]?.metadata?.name ?? ""} still reports ${active[0]?.status?.phase ?? "no phase"}` : ""}`,
      ),
      commit,
    );
  }

  // Failed, or about to fail (FailureTarget) with its pods stuck terminating on a node that is gone.
  const target = jobCondition(job, "FailureTarget");
  const targetAge = secondsSince(target?.lastTransitionTime, now);
  if (state === "failed" || (target !== undefined && targetAge !== undefined && targetAge >= TERMINATING_POD_SECONDS)) {
    // Wait until no commit pod runs: only then can nothing freeze the sandbox again.
    if (active.length > 0) {
      const p = active[0];
      return keep(
        withReady(
          status,
          "CommitPodStopping",
          `commit Job ${jobName} failed; waiting for pod ${p?.metadata?.name ?? ""} to stop (taken as gone ${TERMINATING_POD_SECONDS}s after its deletionTimestamp)`,
          now,
        ),
        RESYNC_WAITING_SECONDS,
      );
    }
    const result = parseCommitResult(
      jobPods.map(terminationMessage).find((m) => m !== undefined),
      targetsOf(status).map((t) => t.containerName),
    );
    const detail = result.kind === "error" ? result.error : result.kind === "invalid" ? result.message : undefined;
    const message = `commit Job ${jobName} failed: ${jobFailureMessage(job)}${detail !== undefined ? `; committer: ${detail}` : ""}`;
    return keepUntilRecorded(failedCommit(ctx, status, "CommitFailed", truncate(message, 1500)), commit);
  }

  // Running, but its controller has created no pod (e.g. admission refuses it).
  if (jobPods.length === 0 && !jobHadPods(job)) {
    const age = secondsSince(job.metadata.creationTimestamp, now) ?? 0;
    const ev = ctx.lookups.commitJobEvents?.[0];
    const why = ev !== undefined ? `: ${ev.reason}: ${truncate(ev.message, 600)}` : "";
    if (age >= JOB_WITHOUT_POD_SECONDS) {
      const failedStatus = fail(status, now, "CommitPodNotCreated", `commit Job ${jobName} created no pod within ${JOB_WITHOUT_POD_SECONDS}s${why}`);
      // No commit pod ever ran, so nothing was paused: no unpause Job (it would be refused the same way).
      failedStatus.conditions = setCondition(
        failedStatus.conditions,
        "ContainersResumed",
        "True",
        "NeverPaused",
        `no commit pod was created, so the containers of pod ${status.sourcePodName ?? ""} were never paused`,
        now,
      );
      return keepUntilRecorded({ status: failedStatus, children: [] }, commit);
    }
    return keep(
      withReady(status, "CommitPodMissing", `commit Job ${jobName} has no pod yet${why}; fails after ${JOB_WITHOUT_POD_SECONDS}s`, now),
      Math.max(1, Math.min(RESYNC_WAITING_SECONDS, Math.ceil(JOB_WITHOUT_POD_SECONDS - age))),
    );
  }
  const p = active[0] ?? jobPods[0];
  const where = p === undefined ? `commit Job ${jobName} runs on node ${nodeName}` : `commit pod ${p.metadata?.name ?? ""} is ${p.status?.phase ?? "Pending"} on node ${nodeName}`;
  return keep(withReady(status, "Committing", where, now));
}

/** The commit Job recorded in status is gone (or replaced): the commit ends here, as Failed. */
function commitJobGone(ctx: Ctx, base: SandboxSnapshotStatus, uid: string): Decision {
  const jobName = commitJobName(ctx.snap.metadata.name ?? "");
  const active = commitPodsOf(ctx, uid).filter((p) => podIsActive(p, ctx.now));
  if (active.length > 0) {
    // Its pods are being deleted with it: wait (bounded by podIsActive) before anything unpauses.
    const status = withReady(base, "CommitJobDeleted", `commit Job ${jobName} was deleted; waiting for pod ${active[0]?.metadata?.name ?? ""} to stop`, ctx.now);
    return { status, children: [], resyncAfterSeconds: RESYNC_WAITING_SECONDS };
  }
  return failedCommit(ctx, base, "CommitJobDeleted", `commit Job ${jobName} (UID ${uid}) was deleted before it finished; the commit was abandoned and is not retried`);
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

function failedCommit(ctx: Ctx, base: SandboxSnapshotStatus, reason: string, message: string): Decision {
  const status = fail(base, ctx.now, reason, message);
  // The committer may have died while the containers were paused: make sure they run again.
  status.conditions = setCondition(
    status.conditions,
    "ContainersResumed",
    "Unknown",
    "UnpauseRequired",
    "the commit failed; the source containers are being resumed",
    ctx.now,
  );
  return failed(ctx, status);
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

/**
 * Runs the unpause Job unless a fresh read of the pod recorded in status (name, UID, node) shows it
 * gone, re-created or no longer Running on that node. The related objects alone never settle it:
 * a pod found only by the direct look-up is not among them. When the read is missing or failed, the
 * unpause Job runs: resuming containers that are not paused does no harm.
 */
export function unpauseDecision(
  snap: SandboxSnapshot,
  status: SandboxSnapshotStatus,
  observed: Observed,
  lookups: Pick<SyncLookups, "sourcePod">,
  cfg: ControllerConfig,
): UnpauseDecision {
  const podName = status.sourcePodName ?? "";
  const nodeName = status.sourceNodeName ?? "";
  const uid = status.sourcePodUID;
  const fresh = lookups.sourcePod;
  const gone = (message: string): UnpauseDecision => ({ job: undefined, settled: { status: "True", reason: "SourceGone", message } });
  if (podName === "" || nodeName === "") return gone("no source pod was recorded; nothing was paused");
  if (fresh === null) return gone(`pod ${podName} no longer exists; nothing is left frozen`);
  if (fresh !== undefined) {
    if (uid !== undefined && fresh.metadata?.uid !== uid) {
      return gone(`pod ${podName} was re-created (UID ${fresh.metadata?.uid ?? "unknown"}, frozen one ${uid}); nothing is left frozen`);
    }
    if (!isRunningOnNode(fresh) || fresh.spec?.nodeName !== nodeName) {
      return gone(`pod ${podName} no longer runs on node ${nodeName}; nothing is left frozen`);
    }
  }
  const jobName = unpauseJobName(snap.metadata.name ?? "");
  const unpause = findByName(observed.jobs, jobName);
  const state = jobState(unpause);
  const containers = (status.containers ?? []).map((c) => c.containerName);
  const sourcePod = fresh ?? findByName(observed.pods, podName);
  const job = unpauseJob({ snapshot: snap, podName, nodeName, sourcePod, containers }, cfg);
  if (state === "succeeded") {
    return { job, settled: { status: "True", reason: "Unpaused", message: `unpause Job ${jobName} resumed the containers` } };
  }
  if (state === "failed") {
    return {
      job,
      settled: {
        status: "False",
        reason: "UnpauseFailed",
        message: `unpause Job ${jobName} failed: ${jobFailureMessage(unpause)}; check the containers of pod ${podName} on node ${nodeName}`,
      },
    };
  }
  return { job };
}

function failed(ctx: Ctx, base: SandboxSnapshotStatus): Decision {
  if (findCondition(base.conditions, "ContainersResumed")?.status !== "Unknown") return { status: base, children: [] };
  const d = unpauseDecision(ctx.snap, base, ctx.observed, ctx.lookups, ctx.cfg);
  if (d.settled) {
    // A finished unpause Job stays until the stored status records the outcome (keepUntilRecorded).
    const conditions = setCondition(base.conditions, "ContainersResumed", d.settled.status, d.settled.reason, d.settled.message, ctx.now);
    return d.job ? { status: { ...base, conditions }, children: [d.job], resyncAfterSeconds: 5 } : { status: { ...base, conditions }, children: [] };
  }
  return { status: base, children: d.job ? [d.job] : [], resyncAfterSeconds: RESYNC_COMMITTING_SECONDS };
}
