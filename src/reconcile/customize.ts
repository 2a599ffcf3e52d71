// The customize hook: which objects Metacontroller should send with each sync (DESIGN.md lifecycle
// step 1). Its answer is cached per (snapshot UID, generation), so it depends on name and spec only
// (plus the BatchSandbox's alloc-status pod names, read once by the shell).
//
// Only objects by name are related, never by label: anyone who may create pods in the namespace can
// set any label, and enough labelled pods would push every sync request past the body limit. Pods
// found by label (the BatchSandbox's, the Jobs') are read by the shell's bounded direct look-ups
// instead (src/server/lookups.ts), and only the ones their controller owns count.
import type { CustomizeRequest, CustomizeResponse, RelatedResourceRule } from "../api/types.js";
import { DEFAULT_AGENT_SANDBOX_VERSION, agentSandboxRelatedRules, agentSandboxSourceName } from "./agent-sandbox.js";
import { API_VERSION, BATCH_SANDBOX_RESOURCE } from "./names.js";
import { MAX_CANDIDATE_NAMES } from "./source.js";

/** Name of the BatchSandbox the shell should read for its alloc-status pods, if any. */
export function customizeLookup(req: CustomizeRequest): string | undefined {
  if (req.parent.status?.phase === "Succeed") return undefined;
  return req.parent.spec.sandboxName;
}

/** What the shell learnt for a spec.sandboxRef Sandbox: the version it relates, its pod-name annotation. */
export interface AgentSandboxCustomize {
  version: string;
  annotatedPod?: string;
}

/**
 * allocPods: pod names from the BatchSandbox's alloc-status annotation (empty when unreadable);
 * agentSandbox: for a Sandbox source, its version and annotated pod (read once by the shell).
 */
export function customize(
  req: CustomizeRequest,
  allocPods: readonly string[] = [],
  agentSandbox: AgentSandboxCustomize = { version: DEFAULT_AGENT_SANDBOX_VERSION },
): CustomizeResponse {
  const snap = req.parent;
  // A Succeed snapshot needs nothing more. (Metacontroller may serve this answer from its cache for a
  // while after the phase changed; relating a few more objects then is harmless.)
  if (snap.status?.phase === "Succeed") return { relatedResources: [] };
  const ns = snap.metadata.namespace;
  // Name rules keep the namespace: without it they match objects of that name in every namespace.
  const inNs = ns !== undefined ? { namespace: ns } : {};
  const rules: RelatedResourceRule[] = [];
  const pods = (names: string[]): void => {
    const unique = [...new Set(names)].filter((n) => n !== "");
    if (unique.length > 0) rules.push({ apiVersion: "v1", resource: "pods", ...inNs, names: unique });
  };

  const sandbox = snap.spec.sandboxName;
  if (sandbox !== undefined) {
    rules.push({ apiVersion: API_VERSION, resource: BATCH_SANDBOX_RESOURCE, ...inNs, names: [sandbox] });
    pods([...allocPods.slice(0, MAX_CANDIDATE_NAMES), `${sandbox}-0`]);
  } else if (snap.spec.podName !== undefined) {
    pods([snap.spec.podName]);
  } else {
    const sbName = agentSandboxSourceName(snap);
    if (sbName !== undefined) rules.push(...agentSandboxRelatedRules(ns, sbName, agentSandbox.annotatedPod, agentSandbox.version));
  }
  // The owning BatchSandbox (its generation names the tag) when it is not the source.
  const owner = snap.metadata.ownerReferences?.find((o) => o.controller === true && o.kind === "BatchSandbox");
  if (owner !== undefined && owner.name !== sandbox) {
    rules.push({ apiVersion: API_VERSION, resource: BATCH_SANDBOX_RESOURCE, ...inNs, names: [owner.name] });
  }
  return { relatedResources: rules };
}
