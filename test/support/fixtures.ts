// Builders for hook requests as Metacontroller sends them (v1 keys `name`, v2 keys `namespace/name`).
import type { BatchSandbox, Job, Pod, SandboxSnapshot, SandboxSnapshotStatus, SyncRequest } from "../../src/api/types.js";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import type { ImageCheckResults } from "../../src/reconcile/image-check.js";

export const NS = "sandboxes";
export const UID = "7d3f0c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
export const CREATED = "2026-11-29T10:00:00Z";
export const t0 = new Date("2026-11-29T10:00:05Z");
export const t1 = new Date("2026-11-29T10:00:07Z");

export const cfg: ControllerConfig = loadConfig({
  SNAPSHOT_REGISTRY: "registry.example.com/snapshots",
  SOURCE_WAIT_SECONDS: "300",
});

export type KeyStyle = "v1" | "v2";

export function snapshot(
  spec: SandboxSnapshot["spec"] = { sandboxName: "sbx" },
  opts: { name?: string; status?: SandboxSnapshotStatus; owner?: "BatchSandbox"; deleting?: string } = {},
): SandboxSnapshot {
  const name = opts.name ?? "snap1";
  const snap: SandboxSnapshot = {
    apiVersion: "sandbox.opensandbox.io/v1alpha1",
    kind: "SandboxSnapshot",
    metadata: {
      name,
      namespace: NS,
      uid: UID,
      generation: 1,
      creationTimestamp: CREATED,
      ...(opts.deleting !== undefined ? { deletionTimestamp: opts.deleting } : {}),
      ...(opts.owner
        ? {
            ownerReferences: [
              {
                apiVersion: "sandbox.opensandbox.io/v1alpha1",
                kind: "BatchSandbox",
                name: spec.sandboxName ?? "sbx",
                uid: "bs-uid-1",
                controller: true,
              },
            ],
          }
        : {}),
    },
    spec,
  };
  if (opts.status) snap.status = opts.status;
  return snap;
}

export function pod(
  name: string,
  opts: {
    phase?: string;
    node?: string;
    containers?: string[];
    labels?: Record<string, string>;
    tolerations?: Record<string, unknown>[];
    terminatedMessage?: string;
  } = {},
): Pod {
  const p: Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: NS, labels: opts.labels ?? {} },
    spec: {
      nodeName: opts.node ?? "node-a",
      containers: (opts.containers ?? ["sandbox"]).map((c) => ({ name: c, image: `example.com/${c}:1` })),
      ...(opts.tolerations ? { tolerations: opts.tolerations } : {}),
    },
    status: { phase: opts.phase ?? "Running" },
  };
  if (opts.terminatedMessage !== undefined && p.status) {
    p.status.containerStatuses = [{ name: "committer", state: { terminated: { exitCode: 0, message: opts.terminatedMessage } } }];
  }
  return p;
}

export function jobPod(jobName: string, phase: string, message?: string): Pod {
  return pod(`${jobName}-x7k2p`, {
    phase,
    labels: { "job-name": jobName, "batch.kubernetes.io/job-name": jobName },
    containers: ["committer"],
    ...(message !== undefined ? { terminatedMessage: message } : {}),
  });
}

export function batchSandbox(name: string, opts: { allocPods?: string[] | string; generation?: number } = {}): BatchSandbox {
  const annotations: Record<string, string> = {};
  if (opts.allocPods !== undefined) {
    annotations["sandbox.opensandbox.io/alloc-status"] =
      typeof opts.allocPods === "string" ? opts.allocPods : JSON.stringify({ pods: opts.allocPods });
  }
  return {
    apiVersion: "sandbox.opensandbox.io/v1alpha1",
    kind: "BatchSandbox",
    metadata: { name, namespace: NS, generation: opts.generation ?? 3, annotations },
    spec: { replicas: 1, template: { spec: { containers: [{ name: "sandbox", image: "example.com/sandbox:1" }] } } },
  };
}

export function job(name: string, state: "running" | "succeeded" | "failed", reason?: string): Job {
  const conditions =
    state === "succeeded"
      ? [{ type: "Complete", status: "True" }]
      : state === "failed"
        ? [{ type: "Failed", status: "True", reason: reason ?? "BackoffLimitExceeded", message: "Job has reached the specified backoff limit" }]
        : [];
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, namespace: NS, labels: { "sandbox.opensandbox.io/sandbox-snapshot-name": "snap1" } },
    spec: {},
    status: { ...(state === "running" ? { active: 1 } : {}), conditions },
  };
}

function key(style: KeyStyle, name: string): string {
  return style === "v1" ? name : `${NS}/${name}`;
}

export function request(
  parent: SandboxSnapshot,
  world: { jobs?: Job[]; pods?: Pod[]; batchSandboxes?: BatchSandbox[]; style?: KeyStyle; finalizing?: boolean } = {},
): SyncRequest {
  const style = world.style ?? "v1";
  const byKey = <T extends { metadata?: { name?: string } }>(objs: T[] = []): Record<string, T> =>
    Object.fromEntries(objs.map((o) => [key(style, o.metadata?.name ?? ""), o]));
  const related: SyncRequest["related"] = { "Pod.v1": byKey(world.pods) };
  if (parent.spec.sandboxName !== undefined) {
    related["BatchSandbox.sandbox.opensandbox.io/v1alpha1"] = byKey(world.batchSandboxes);
  }
  return {
    controller: { apiVersion: "metacontroller.k8s.io/v1alpha1", kind: "CompositeController", metadata: { name: "sandbox-snapshot-controller" } },
    parent,
    children: { "Job.batch/v1": byKey(world.jobs) },
    related,
    finalizing: world.finalizing ?? false,
  };
}

/** The request again, with the status a previous answer returned (Metacontroller writes it back). */
export function withStatus(req: SyncRequest, status: SandboxSnapshotStatus): SyncRequest {
  return { ...req, parent: { ...req.parent, status } };
}

export const DIGEST_A = `sha256:${"a".repeat(64)}`;
export const DIGEST_B = `sha256:${"b".repeat(64)}`;

/**
 * What the image verifier reports for a finished commit: the manifest at each container's tag
 * (`digests` by container; absent = no manifest there), carrying `uid` (this snapshot's by default).
 */
export function registryHolds(
  status: SandboxSnapshotStatus,
  digests: Record<string, string>,
  opts: { uid?: string | undefined; sizeBytes?: number } = {},
): ImageCheckResults {
  const uid = "uid" in opts ? opts.uid : UID;
  return {
    purpose: "commit",
    results: (status.containers ?? []).map((c) => {
      const d = digests[c.containerName];
      return {
        containerName: c.containerName,
        atTag: d === undefined ? { outcome: "not-found" } : { outcome: "found", digest: d, snapshotUid: uid, ...(opts.sizeBytes !== undefined ? { sizeBytes: opts.sizeBytes } : {}) },
      };
    }),
  };
}
