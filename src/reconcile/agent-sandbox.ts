// kubernetes-sigs/agent-sandbox's Sandbox (agents.x-k8s.io) as a snapshot source (spec.sandboxRef).
// The rules follow agent-sandbox's own controller: the Sandbox's pod is the one named in its
// `agents.x-k8s.io/pod-name` annotation (a pod adopted from a warm pool), else the pod named like the
// Sandbox; it counts only when the Sandbox controls it (controller ownerReference with the Sandbox's
// UID) — any namespace user can create a pod with that name. A suspended Sandbox (v1beta1
// `operatingMode: Suspended`, v1alpha1 `replicas: 0`) has no pod. Pure: no I/O here.
import type { AgentSandbox, KubeObject, Pod, RelatedResourceRule, SandboxSnapshot, SyncRequest } from "../api/types.js";
import { isRunningOnNode, type SourceResolution } from "./source.js";

export const AGENT_SANDBOX_GROUP = "agents.x-k8s.io";
export const AGENT_SANDBOX_KIND = "Sandbox";
export const AGENT_SANDBOX_RESOURCE = "sandboxes";
/** Served from agent-sandbox v0.5.0 on (storage version); releases before serve only v1alpha1. */
export const DEFAULT_AGENT_SANDBOX_VERSION = "v1beta1";
/** Set by agent-sandbox when a Sandbox adopted a warm-pool pod whose name differs from its own. */
export const ANNOTATION_AGENT_SANDBOX_POD_NAME = `${AGENT_SANDBOX_GROUP}/pod-name`;

const groupOf = (apiVersion: string | undefined): string => (apiVersion ?? "").split("/")[0] ?? "";

/** The Sandbox named by spec.sandboxRef, when the snapshot's source is an agent-sandbox Sandbox. */
export function agentSandboxSourceName(snap: SandboxSnapshot): string | undefined {
  const ref = snap.spec.sandboxRef;
  if (ref?.apiGroup !== AGENT_SANDBOX_GROUP || ref.kind !== AGENT_SANDBOX_KIND) return undefined;
  return ref.name;
}

/** The Sandbox customize's shell should read for its pod-name annotation, if any (not once Succeed). */
export function customizeAgentSandboxLookup(snap: SandboxSnapshot): string | undefined {
  if (snap.status?.phase === "Succeed") return undefined;
  return agentSandboxSourceName(snap);
}

export function isAgentSandbox(obj: KubeObject): obj is AgentSandbox {
  return obj.kind === AGENT_SANDBOX_KIND && groupOf(obj.apiVersion) === AGENT_SANDBOX_GROUP;
}

/** The Sandboxes among a hook request's related objects (read by their own kind and apiVersion). */
export function relatedAgentSandboxes(req: Pick<SyncRequest, "related">): AgentSandbox[] {
  const out = new Map<string, AgentSandbox>();
  for (const byName of Object.values(req.related ?? {})) {
    for (const obj of Object.values(byName)) if (isAgentSandbox(obj)) out.set(obj.metadata?.name ?? "", obj);
  }
  return [...out.values()];
}

/** Whether the Sandbox is asked to have no pod: v1beta1 `operatingMode: Suspended`, v1alpha1 `replicas: 0`. */
export function isSuspended(sb: AgentSandbox): boolean {
  const spec = sb.spec ?? {};
  return spec.operatingMode === "Suspended" || spec.replicas === 0;
}

const POD_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

/** The Sandbox's pod-name annotation when it holds a usable pod name (anyone who may edit the Sandbox can write it). */
export function annotatedPodName(sb: AgentSandbox | undefined): string | undefined {
  const v = sb?.metadata?.annotations?.[ANNOTATION_AGENT_SANDBOX_POD_NAME];
  return v !== undefined && v.length <= 253 && POD_NAME.test(v) ? v : undefined;
}

/** The pod agent-sandbox runs for this Sandbox: its pod-name annotation, else its own name. */
export function agentSandboxPodName(name: string, sb: AgentSandbox | undefined): string {
  return annotatedPodName(sb) ?? name;
}

/** True only when the pod's controller ownerReference is this Sandbox, by UID. */
export function isControlledBySandbox(pod: Pod, sb: AgentSandbox): boolean {
  const uid = sb.metadata?.uid ?? "";
  if (uid === "") return false;
  const ctl = pod.metadata?.ownerReferences?.find((o) => o.controller === true);
  return ctl !== undefined && ctl.uid === uid && ctl.kind === AGENT_SANDBOX_KIND && groupOf(ctl.apiVersion) === AGENT_SANDBOX_GROUP;
}

/** The snapshot's controller owner when it is an agent-sandbox Sandbox. */
export function agentSandboxOwner(snap: SandboxSnapshot): { name: string; uid: string } | undefined {
  const owner = snap.metadata.ownerReferences?.find((o) => o.controller === true);
  if (owner?.kind !== AGENT_SANDBOX_KIND || groupOf(owner.apiVersion) !== AGENT_SANDBOX_GROUP) return undefined;
  return { name: owner.name, uid: owner.uid };
}

export function resolveAgentSandboxSource(name: string, pods: readonly Pod[], sandboxes: readonly AgentSandbox[]): SourceResolution {
  const what = `Sandbox ${name} (spec.sandboxRef)`;
  const sb = sandboxes.find((s) => s.metadata?.name === name);
  if (!sb) return { found: false, reason: "SourceNotFound", message: `${what} does not exist` };
  if (isSuspended(sb)) {
    const field = sb.spec?.operatingMode === "Suspended" ? "spec.operatingMode is Suspended" : "spec.replicas is 0";
    return {
      found: false,
      reason: "SourceSuspended",
      message: `${what} is suspended (${field}): it has no pod to snapshot until it runs again`,
    };
  }
  const podName = agentSandboxPodName(name, sb);
  const pod = pods.find((p) => p.metadata?.name === podName);
  if (!pod) return { found: false, reason: "SourceNotFound", message: `${what} has no pod ${podName} yet` };
  if (!isControlledBySandbox(pod, sb)) {
    return {
      found: false,
      reason: "SourceNotOwned",
      message: `pod ${podName} is not controlled by ${what} (no controller ownerReference with the Sandbox's UID); it is not snapshotted`,
    };
  }
  if (!isRunningOnNode(pod)) {
    return {
      found: false,
      reason: "SourceNotRunning",
      message: `pod ${podName} of ${what} is ${pod.metadata?.deletionTimestamp ? "being deleted" : (pod.status?.phase ?? "not yet scheduled")}, not Running on a node`,
    };
  }
  return { found: true, pod, nodeName: pod.spec?.nodeName ?? "" };
}

/**
 * customize rules for a Sandbox source: the Sandbox by name and its pod by name (the one its
 * annotation names, read once by the shell, else the one named like it). Never a label selector:
 * anyone can label a pod. A pod adopted after this answer was cached is found by the direct look-up.
 */
export function agentSandboxRelatedRules(
  namespace: string | undefined,
  name: string,
  annotatedPod: string | undefined,
  version: string,
): RelatedResourceRule[] {
  const inNs = namespace !== undefined ? { namespace } : {};
  return [
    { apiVersion: `${AGENT_SANDBOX_GROUP}/${version}`, resource: AGENT_SANDBOX_RESOURCE, ...inNs, names: [name] },
    { apiVersion: "v1", resource: "pods", ...inNs, names: [annotatedPod ?? name] },
  ];
}
