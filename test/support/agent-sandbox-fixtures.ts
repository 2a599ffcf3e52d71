// Builders for hook requests whose source is an agent-sandbox Sandbox (spec.sandboxRef), on top of
// ./fixtures.ts: the Sandbox as agent-sandbox serves it (v1beta1 `operatingMode`, v1alpha1 `replicas`)
// and its pod with the controller ownerReference agent-sandbox's controller sets.
import type { AgentSandbox, Job, Pod, SandboxSnapshot, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { NS, pod, request, snapshot, type KeyStyle } from "./fixtures.js";

export const SANDBOX_UID = "5b1e2c3d-4f50-4a6b-9c7d-8e9f0a1b2c3d";

export function agentSandbox(
  name: string,
  opts: { operatingMode?: "Running" | "Suspended"; replicas?: number; podName?: string; uid?: string; version?: "v1beta1" | "v1alpha1" } = {},
): AgentSandbox {
  const version = opts.version ?? "v1beta1";
  const spec: Record<string, unknown> = {
    podTemplate: { spec: { containers: [{ name: "sandbox", image: "example.com/sandbox:1" }] } },
  };
  if (version === "v1beta1") spec.operatingMode = opts.operatingMode ?? "Running";
  else spec.replicas = opts.replicas ?? 1;
  return {
    apiVersion: `agents.x-k8s.io/${version}`,
    kind: "Sandbox",
    metadata: {
      name,
      namespace: NS,
      uid: opts.uid ?? SANDBOX_UID,
      generation: 4,
      ...(opts.podName !== undefined ? { annotations: { "agents.x-k8s.io/pod-name": opts.podName } } : {}),
    },
    spec,
  };
}

export type PodOwner = "sandbox" | "none" | "other-uid" | "not-controller" | "other-kind";

/** A Running pod; by default controlled by the Sandbox (agent-sandbox's controller ownerReference). */
export function sandboxPod(name: string, owner: PodOwner = "sandbox", opts: Parameters<typeof pod>[1] = {}): Pod {
  const p = pod(name, opts);
  const ref = { apiVersion: "agents.x-k8s.io/v1beta1", kind: "Sandbox", name: "asb", uid: SANDBOX_UID, controller: true, blockOwnerDeletion: true };
  const refs = {
    sandbox: [ref],
    none: [],
    "other-uid": [{ ...ref, uid: "00000000-0000-4000-8000-000000000000" }],
    "not-controller": [{ ...ref, controller: false }],
    "other-kind": [{ ...ref, apiVersion: "apps/v1", kind: "ReplicaSet" }],
  }[owner];
  if (p.metadata && refs.length > 0) p.metadata.ownerReferences = refs;
  return p;
}

/** A snapshot of Sandbox `name`; `owned` adds the Sandbox as its controller owner. */
export function sandboxSnapshot(
  name = "asb",
  opts: { owned?: boolean; status?: SandboxSnapshotStatus; deletionPolicy?: "Delete" | "Retain"; deleting?: string } = {},
): SandboxSnapshot {
  const spec: SandboxSnapshot["spec"] = { sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox", name } };
  if (opts.deletionPolicy !== undefined) spec.deletionPolicy = opts.deletionPolicy;
  const snap = snapshot(spec, {
    ...(opts.status ? { status: opts.status } : {}),
    ...(opts.deleting !== undefined ? { deleting: opts.deleting } : {}),
  });
  if (opts.owned === true) {
    snap.metadata.ownerReferences = [
      { apiVersion: "agents.x-k8s.io/v1beta1", kind: "Sandbox", name, uid: SANDBOX_UID, controller: true, blockOwnerDeletion: true },
    ];
  }
  return snap;
}

/** A sync request as Metacontroller sends it for a Sandbox source (related Sandboxes keyed by their version). */
export function sandboxRequest(
  parent: SandboxSnapshot,
  world: { pods?: Pod[]; sandboxes?: AgentSandbox[]; style?: KeyStyle; jobs?: Job[] } = {},
): SyncRequest {
  const style = world.style ?? "v1";
  const req = request(parent, { pods: world.pods ?? [], jobs: world.jobs ?? [], style });
  const byVersion = new Map<string, Record<string, AgentSandbox>>();
  for (const sb of world.sandboxes ?? []) {
    const key = `Sandbox.${sb.apiVersion ?? "agents.x-k8s.io/v1beta1"}`;
    const m = byVersion.get(key) ?? {};
    const name = sb.metadata?.name ?? "";
    m[style === "v1" ? name : `${NS}/${name}`] = sb;
    byVersion.set(key, m);
  }
  if (byVersion.size === 0) byVersion.set("Sandbox.agents.x-k8s.io/v1beta1", {});
  req.related = { ...req.related, ...Object.fromEntries(byVersion) };
  return req;
}
