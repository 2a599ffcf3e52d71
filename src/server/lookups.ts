// The sync hook's shell look-ups: time-bounded GETs planned by the pure core (planSyncLookups).
import type { AgentSandbox, BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { agentSandboxPodName, agentSandboxSourceName } from "../reconcile/agent-sandbox.js";
import { candidatePodNames } from "../reconcile/source.js";
import type { SyncLookupPlan, SyncLookups } from "../reconcile/sync.js";
import { describeKubeError, type KubeAccess } from "./kube.js";

export const NO_API = "no Kubernetes API access (not in a cluster and KUBECONFIG unset)";

type SourceLookup = NonNullable<SyncLookups["source"]>;

async function getPods(kube: KubeAccess, ns: string, names: string[]): Promise<Pod[]> {
  const unique = [...new Set(names)].slice(0, 8);
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
  const pods = await getPods(kube, ns, candidatePodNames(snap.spec, bs));
  return { batchSandboxes, pods };
}

export async function performSyncLookups(plan: SyncLookupPlan, snap: SandboxSnapshot, kube: KubeAccess | undefined): Promise<SyncLookups> {
  const out: SyncLookups = {};
  if (!kube) {
    if (plan.source) out.sourceError = NO_API;
    if (plan.pushSecret !== undefined) out.pushSecretError = NO_API;
    return out;
  }
  const ns = snap.metadata.namespace ?? "";
  const secretName = plan.pushSecret;
  await Promise.all([
    plan.source
      ? lookupSource(snap, plan, kube).then(
          (source) => {
            out.source = source;
          },
          (err: unknown) => {
            out.sourceError = describeKubeError(err);
          },
        )
      : undefined,
    secretName !== undefined
      ? kube.secretExists(ns, secretName).then(
          (exists) => {
            out.pushSecret = exists ? "present" : "absent";
          },
          (err: unknown) => {
            out.pushSecretError = describeKubeError(err);
          },
        )
      : undefined,
  ]);
  return out;
}
