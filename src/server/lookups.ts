// The sync hook's shell look-ups: time-bounded GETs planned by the pure core (planSyncLookups).
import type { BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { candidatePodNames } from "../reconcile/source.js";
import type { SyncLookupPlan, SyncLookups } from "../reconcile/sync.js";
import { describeKubeError, type KubeAccess } from "./kube.js";

export const NO_API = "no Kubernetes API access (not in a cluster and KUBECONFIG unset)";

async function lookupSource(snap: SandboxSnapshot, kube: KubeAccess): Promise<{ batchSandboxes: BatchSandbox[]; pods: Pod[] }> {
  const ns = snap.metadata.namespace ?? "";
  const batchSandboxes: BatchSandbox[] = [];
  let bs: BatchSandbox | undefined;
  if (snap.spec.sandboxName !== undefined) {
    bs = await kube.getBatchSandbox(ns, snap.spec.sandboxName);
    if (bs) batchSandboxes.push(bs);
  }
  const names = [...new Set(candidatePodNames(snap.spec, bs))].slice(0, 8);
  const pods = (await Promise.all(names.map((n) => kube.getPod(ns, n)))).filter((p): p is Pod => p !== undefined);
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
      ? lookupSource(snap, kube).then(
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
