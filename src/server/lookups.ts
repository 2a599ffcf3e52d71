// The hooks' shell look-ups: time-bounded API reads planned by the pure core (planSyncLookups,
// planFinalizeLookups). Lists are bounded in pages (kube.ts ListBound): what anyone may create in the
// namespace can make a look-up read more, never make it unbounded or fail the hook call.
import type { AgentSandbox, BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { agentSandboxPodName, agentSandboxSourceName } from "../reconcile/agent-sandbox.js";
import { LABEL_BATCH_SANDBOX } from "../reconcile/names.js";
import { candidatePodNames } from "../reconcile/source.js";
import type { JobEvent, SyncLookupPlan, SyncLookups } from "../reconcile/sync.js";
import { describeKubeError, type KubeAccess, type KubeEvent, type ListBound } from "./kube.js";

export const NO_API = "no Kubernetes API access (not in a cluster and KUBECONFIG unset)";

/** Pods read by the BatchSandbox label while resolving a source (the core keeps only the owned ones). */
export const SOURCE_LABEL_BOUND: ListBound = { pageSize: 20, pages: 2 };
/** Pods read by the commit Job's selector: a Job with backoffLimit 0 has one pod, the rest is noise. */
export const JOB_PODS_BOUND: ListBound = { pageSize: 50, pages: 4 };
export const JOB_EVENTS_BOUND: ListBound = { pageSize: 20, pages: 1 };

type SourceLookup = NonNullable<SyncLookups["source"]>;

async function getPods(kube: KubeAccess, ns: string, names: string[]): Promise<Pod[]> {
  const unique = [...new Set(names)].slice(0, 17);
  return (await Promise.all(unique.map((n) => kube.getPod(ns, n)))).filter((p): p is Pod => p !== undefined);
}

/** A Sandbox source: the Sandbox, then the pod its annotation names (or its own name). */
async function lookupAgentSandbox(ns: string, name: string, version: string, kube: KubeAccess): Promise<SourceLookup> {
  const sb = await kube.getAgentSandbox(ns, name, version);
  const agentSandboxes: AgentSandbox[] = sb ? [sb] : [];
  const pods = sb ? await getPods(kube, ns, [agentSandboxPodName(name, sb)]) : [];
  return { batchSandboxes: [], pods, agentSandboxes };
}

async function lookupSource(snap: SandboxSnapshot, plan: SyncLookupPlan, kube: KubeAccess): Promise<SourceLookup> {
  const ns = snap.metadata.namespace ?? "";
  const agentSandbox = agentSandboxSourceName(snap);
  if (agentSandbox !== undefined) return lookupAgentSandbox(ns, agentSandbox, plan.agentSandboxVersion ?? "", kube);
  const batchSandboxes: BatchSandbox[] = [];
  let bs: BatchSandbox | undefined;
  if (snap.spec.sandboxName !== undefined) {
    bs = await kube.getBatchSandbox(ns, snap.spec.sandboxName);
    if (bs) batchSandboxes.push(bs);
  }
  const [named, labelled] = await Promise.all([
    getPods(kube, ns, candidatePodNames(snap.spec, bs)),
    snap.spec.sandboxName !== undefined ? kube.listPods(ns, `${LABEL_BATCH_SANDBOX}=${snap.spec.sandboxName}`, SOURCE_LABEL_BOUND) : Promise.resolve([]),
  ]);
  return { batchSandboxes, pods: [...labelled, ...named] };
}

/** Warning Events first, newest first. */
function jobEvents(events: readonly KubeEvent[]): JobEvent[] {
  // The client library hands times over as Date objects, the wire as strings: compare them as numbers.
  const when = (e: KubeEvent): number => {
    const t: unknown = e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
    const ms = t instanceof Date ? t.getTime() : typeof t === "string" ? Date.parse(t) : Number.NaN;
    return Number.isNaN(ms) ? 0 : ms;
  };
  return [...events]
    .filter((e) => (e.reason ?? "") !== "" || (e.message ?? "") !== "")
    .sort((a, b) => Number(b.type === "Warning") - Number(a.type === "Warning") || when(b) - when(a))
    .map((e) => ({ reason: e.reason ?? "", message: e.message ?? "" }));
}

export async function performSyncLookups(plan: SyncLookupPlan, snap: SandboxSnapshot, kube: KubeAccess | undefined): Promise<SyncLookups> {
  const out: SyncLookups = {};
  if (!kube) {
    if (plan.source) out.sourceError = NO_API;
    if (plan.pushSecret !== undefined) out.pushSecretError = NO_API;
    if (plan.commitPods !== undefined) out.commitPodsError = NO_API;
    if (plan.sourcePod !== undefined) out.sourcePodError = NO_API;
    return out;
  }
  const ns = snap.metadata.namespace ?? "";
  const secretName = plan.pushSecret;
  // A failed or unreadable answer becomes an error string for the core, never a failed hook call.
  const settle = <T>(p: Promise<T>, ok: (v: T) => void, bad: (msg: string) => void): Promise<void> =>
    p.then(ok).catch((err: unknown) => {
      bad(describeKubeError(err));
    });
  const sourcePod = plan.sourcePod;
  const events = plan.commitJobEvents;
  await Promise.all([
    plan.source
      ? settle(lookupSource(snap, plan, kube), (v) => (out.source = v), (m) => (out.sourceError = m))
      : undefined,
    secretName !== undefined
      ? settle(kube.secretExists(ns, secretName), (v) => (out.pushSecret = v ? "present" : "absent"), (m) => (out.pushSecretError = m))
      : undefined,
    plan.commitPods !== undefined
      ? settle(kube.listPods(ns, plan.commitPods.selector, JOB_PODS_BOUND), (v) => (out.commitPods = v), (m) => (out.commitPodsError = m))
      : undefined,
    sourcePod !== undefined
      ? settle(kube.getPod(ns, sourcePod), (v) => (out.sourcePod = v ?? null), (m) => (out.sourcePodError = m))
      : undefined,
    events !== undefined
      ? settle(kube.listEvents(ns, `involvedObject.uid=${events.uid}`, JOB_EVENTS_BOUND), (v) => (out.commitJobEvents = jobEvents(v)), () => undefined)
      : undefined,
  ]);
  return out;
}

/** Whether a plan asks for anything at all. */
export function plansLookups(plan: Partial<SyncLookupPlan>): boolean {
  return plan.source === true || plan.pushSecret !== undefined || plan.commitPods !== undefined || plan.sourcePod !== undefined || plan.commitJobEvents !== undefined;
}
