// Reads the observed world out of a hook request by the objects' metadata, never by map keys
// (Metacontroller's v1 and v2 hooks key them differently).
import type { AgentSandbox, BatchSandbox, Job, KubeObject, Pod, SyncRequest } from "../api/types.js";
import { relatedAgentSandboxes } from "./agent-sandbox.js";
import { API_VERSION, BATCH_SANDBOX_KIND, LABEL_JOB_NAME, LABEL_JOB_NAME_NEW } from "./names.js";

export interface Observed {
  jobs: Job[];
  pods: Pod[];
  batchSandboxes: BatchSandbox[];
  /** agent-sandbox Sandboxes (spec.sandboxRef sources). */
  agentSandboxes: AgentSandbox[];
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

export function findByName<T extends KubeObject>(objs: readonly T[], name: string): T | undefined {
  return objs.find((o) => o.metadata?.name === name);
}

export function podsOfJob(pods: readonly Pod[], jobName: string): Pod[] {
  return pods.filter((p) => {
    const labels = p.metadata?.labels ?? {};
    return labels[LABEL_JOB_NAME] === jobName || labels[LABEL_JOB_NAME_NEW] === jobName;
  });
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

export function jobFailureMessage(job: Job | undefined): string {
  const c = job?.status?.conditions?.find((x) => x.type === "Failed" && x.status === "True");
  if (!c) return "the Job failed";
  return [c.reason, c.message].filter((s) => s !== undefined && s !== "").join(": ");
}

export function podIsActive(pod: Pod): boolean {
  const phase = pod.status?.phase;
  return phase === "Running" || phase === "Pending" || phase === undefined;
}
