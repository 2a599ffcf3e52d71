// Reads the observed world out of a hook request by the objects' metadata, never by map keys
// (Metacontroller's v1 and v2 hooks key them differently), and decides which of those objects are
// trusted: only what the Job (or the BatchSandbox) controls counts, whatever labels anyone else sets.
import type { AgentSandbox, BatchSandbox, Job, KubeObject, OwnerReference, Pod, SyncRequest } from "../api/types.js";
import { relatedAgentSandboxes } from "./agent-sandbox.js";
import { TERMINATING_POD_SECONDS, secondsSince } from "./bounds.js";
import {
  API_VERSION,
  BATCH_SANDBOX_KIND,
  LABEL_CONTROLLER_UID,
  LABEL_CONTROLLER_UID_NEW,
  LABEL_JOB_NAME,
  LABEL_JOB_NAME_NEW,
} from "./names.js";

export interface Observed {
  jobs: Job[];
  pods: Pod[];
  batchSandboxes: BatchSandbox[];
  /** agent-sandbox Sandboxes (spec.sandboxRef sources). */
  agentSandboxes: AgentSandbox[];
}

/** An object that claimed to be ours (a label, a name, an owner reference) but is not trusted. */
export interface Ignored {
  kind: string;
  name: string;
  uid?: string;
  reason: string;
}

function kindOf(typeKey: string, obj: KubeObject): string {
  // Outer keys are `Kind.version` or `Kind.group/version`; prefer the object's own kind.
  return obj.kind ?? typeKey.split(".")[0] ?? "";
}

export function observe(req: Pick<SyncRequest, "children" | "related">): Observed {
  const jobs: Job[] = [];
  const pods: Pod[] = [];
  const batchSandboxes: BatchSandbox[] = [];
  for (const [typeKey, byName] of Object.entries(req.children)) {
    for (const obj of Object.values(byName)) {
      if (kindOf(typeKey, obj) === "Job") jobs.push(obj);
    }
  }
  for (const [typeKey, byName] of Object.entries(req.related ?? {})) {
    for (const obj of Object.values(byName)) {
      const kind = kindOf(typeKey, obj);
      if (kind === "Pod") pods.push(obj);
      else if (kind === BATCH_SANDBOX_KIND && (obj.apiVersion ?? API_VERSION) === API_VERSION) {
        batchSandboxes.push(obj);
      }
    }
  }
  // A pod can be related by several rules (by name and by label): keep one copy each.
  return { jobs, pods: uniqueByName(pods), batchSandboxes: uniqueByName(batchSandboxes), agentSandboxes: relatedAgentSandboxes(req) };
}

function uniqueByName<T extends KubeObject>(objs: T[]): T[] {
  const seen = new Map<string, T>();
  for (const o of objs) seen.set(o.metadata?.name ?? "", o);
  return [...seen.values()];
}

/** Both lists, one copy per name; `fresh` (a direct look-up) wins over `related`. */
export function mergeByName<T extends KubeObject>(related: readonly T[], fresh: readonly T[]): T[] {
  return uniqueByName([...related, ...fresh]);
}

export function findByName<T extends KubeObject>(objs: readonly T[], name: string): T | undefined {
  return objs.find((o) => o.metadata?.name === name);
}

/** The controller ownerReference, if any (at most one is allowed by the API server). */
export function controllerOf(obj: KubeObject | undefined): OwnerReference | undefined {
  return obj?.metadata?.ownerReferences?.find((o) => o.controller === true);
}

export function isControlledBy(obj: KubeObject | undefined, kind: string, uid: string | undefined): boolean {
  if (uid === undefined || uid === "") return false;
  const c = controllerOf(obj);
  return c !== undefined && c.kind === kind && c.uid === uid;
}

function claimsJob(pod: Pod, jobName: string, jobUid: string | undefined): boolean {
  const labels = pod.metadata?.labels ?? {};
  if (labels[LABEL_JOB_NAME] === jobName || labels[LABEL_JOB_NAME_NEW] === jobName) return true;
  if (jobUid !== undefined && (labels[LABEL_CONTROLLER_UID] === jobUid || labels[LABEL_CONTROLLER_UID_NEW] === jobUid)) return true;
  return (pod.metadata?.ownerReferences ?? []).some((o) => o.kind === "Job" && (o.name === jobName || o.uid === jobUid));
}

/**
 * The pods the Job with `jobUid` controls: its controller ownerReference and its controller-uid label
 * both name that UID (the Job controller sets both). Anything else that claims the Job (by its
 * job-name label, say) is returned as ignored; pods that claim nothing are simply not the Job's.
 */
export function trustedJobPods(
  pods: readonly Pod[],
  jobName: string,
  jobUid: string | undefined,
  job?: Job,
): { pods: Pod[]; ignored: Ignored[] } {
  const trusted: Pod[] = [];
  const ignored: Ignored[] = [];
  const want = job !== undefined && job.metadata.uid === jobUid ? templateContainer(job) : undefined;
  for (const p of pods) {
    if (!claimsJob(p, jobName, jobUid)) continue;
    const labels = p.metadata?.labels ?? {};
    const labelled = jobUid !== undefined && (labels[LABEL_CONTROLLER_UID] === jobUid || labels[LABEL_CONTROLLER_UID_NEW] === jobUid);
    const controlled = isControlledBy(p, "Job", jobUid) && labelled;
    // The Job controller adopts any orphan that matches its selector: a planted pod with the
    // controller-uid label becomes "controlled". It still does not run the Job's committer command.
    const sameCommand = want === undefined || sameContainer(p.spec?.containers?.[0], want);
    if (controlled && sameCommand) trusted.push(p);
    else {
      ignored.push({
        kind: "Pod",
        name: p.metadata?.name ?? "",
        ...(p.metadata?.uid !== undefined ? { uid: p.metadata.uid } : {}),
        reason:
          jobUid === undefined
            ? `claims Job ${jobName}, whose UID is not known yet`
            : controlled
              ? `is controlled by Job ${jobName} but does not run its committer image and arguments (adopted by its label?)`
              : `claims Job ${jobName} but is not controlled by it (controller ownerReference and controller-uid label must both be ${jobUid})`,
      });
    }
  }
  return { pods: trusted, ignored };
}

interface ContainerShape {
  image?: unknown;
  args?: unknown;
}

function templateContainer(job: Job): ContainerShape | undefined {
  const tpl = (job.spec as { template?: { spec?: { containers?: ContainerShape[] } } } | undefined)?.template;
  return tpl?.spec?.containers?.[0];
}

function sameContainer(c: ContainerShape | undefined, want: ContainerShape): boolean {
  return c !== undefined && c.image === want.image && JSON.stringify(c.args ?? []) === JSON.stringify(want.args ?? []);
}

export type JobState = "absent" | "running" | "succeeded" | "failed";

/** Terminal states come only from the Job's own Complete/Failed conditions (not FailureTarget etc.). */
export function jobState(job: Job | undefined): JobState {
  if (!job) return "absent";
  const conds = job.status?.conditions ?? [];
  if (conds.some((c) => c.type === "Complete" && c.status === "True")) return "succeeded";
  if (conds.some((c) => c.type === "Failed" && c.status === "True")) return "failed";
  return "running";
}

export function jobCondition(job: Job | undefined, type: string): NonNullable<NonNullable<Job["status"]>["conditions"]>[number] | undefined {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === "True");
}

export function jobFailureMessage(job: Job | undefined): string {
  const c = jobCondition(job, "Failed") ?? jobCondition(job, "FailureTarget");
  if (!c) return "the Job failed";
  return [c.reason, c.message].filter((s) => s !== undefined && s !== "").join(": ");
}

/** Whether the Job's own status says a pod of it ever existed. */
export function jobHadPods(job: Job | undefined): boolean {
  const s = job?.status;
  return (s?.active ?? 0) + (s?.succeeded ?? 0) + (s?.failed ?? 0) + (s?.terminating ?? 0) > 0;
}

/**
 * A pod that may still run (and so may still hold containers frozen). A pod past its
 * deletionTimestamp by TERMINATING_POD_SECONDS is on a node that stopped reporting: it is taken as
 * gone, so no wait on it lasts longer than that.
 */
export function podIsActive(pod: Pod, now: Date): boolean {
  const phase = pod.status?.phase;
  if (!(phase === "Running" || phase === "Pending" || phase === undefined)) return false;
  const overdue = secondsSince(pod.metadata?.deletionTimestamp, now);
  return overdue === undefined || overdue < TERMINATING_POD_SECONDS;
}
