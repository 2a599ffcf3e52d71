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

/** UIDs derived from names, so every fixture object has a stable one. */
export const uidOf = (kind: string, name: string): string => `${kind.toLowerCase()}-uid-${name}`;

export function pod(
  name: string,
  opts: {
    phase?: string;
    node?: string;
    containers?: string[];
    labels?: Record<string, string>;
    tolerations?: Record<string, unknown>[];
    terminatedMessage?: string;
    /** The controller ownerReference; default for `<sbx>-0`-style names: none (see sandboxPod). */
    controller?: { kind: string; name: string; uid: string; apiVersion?: string };
    uid?: string;
    deletionTimestamp?: string;
  } = {},
): Pod {
  const c = opts.controller;
  const p: Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name,
      namespace: NS,
      uid: opts.uid ?? uidOf("Pod", name),
      labels: opts.labels ?? {},
      ...(c !== undefined
        ? { ownerReferences: [{ apiVersion: c.apiVersion ?? "v1", kind: c.kind, name: c.name, uid: c.uid, controller: true, blockOwnerDeletion: true }] }
        : {}),
      ...(opts.deletionTimestamp !== undefined ? { deletionTimestamp: opts.deletionTimestamp } : {}),
    },
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

/** A pod the BatchSandbox's controller created (controller ownerReference to it). */
export function sandboxPod(name: string, opts: Parameters<typeof pod>[1] & { sandbox?: string } = {}): Pod {
  const sandbox = opts.sandbox ?? "sbx";
  return pod(name, {
    labels: { "batch-sandbox.sandbox.opensandbox.io/name": sandbox },
    controller: { apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "BatchSandbox", name: sandbox, uid: uidOf("BatchSandbox", sandbox) },
    ...opts,
  });
}

/** A pod the Job controller created for Job `jobName`: its ownerReference and controller-uid labels. */
export function jobPod(jobName: string, phase: string, message?: string, opts: { name?: string; deletionTimestamp?: string } = {}): Pod {
  const uid = uidOf("Job", jobName);
  return pod(opts.name ?? `${jobName}-x7k2p`, {
    phase,
    labels: {
      "job-name": jobName,
      "batch.kubernetes.io/job-name": jobName,
      "controller-uid": uid,
      "batch.kubernetes.io/controller-uid": uid,
    },
    controller: { apiVersion: "batch/v1", kind: "Job", name: jobName, uid },
    containers: ["committer"],
    ...(message !== undefined ? { terminatedMessage: message } : {}),
    ...(opts.deletionTimestamp !== undefined ? { deletionTimestamp: opts.deletionTimestamp } : {}),
  });
}

/** A pod anyone could create: the Job's labels and name pattern, but not created by the Job controller. */
export function forgedJobPod(jobName: string, phase: string, message?: string, opts: { name?: string; ownerUid?: string } = {}): Pod {
  return pod(opts.name ?? "a-x", {
    phase,
    labels: { "job-name": jobName, "batch.kubernetes.io/job-name": jobName },
    containers: ["committer"],
    ...(opts.ownerUid !== undefined ? { controller: { apiVersion: "batch/v1", kind: "Job", name: jobName, uid: opts.ownerUid } } : {}),
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
    metadata: { name, namespace: NS, uid: uidOf("BatchSandbox", name), generation: opts.generation ?? 3, annotations },
    spec: { replicas: 1, template: { spec: { containers: [{ name: "sandbox", image: "example.com/sandbox:1" }] } } },
  };
}

/** When the fixtures' Jobs were created and finished (a second after the snapshot). */
export const JOB_CREATED = "2026-11-29T10:00:01Z";
export const JOB_FINISHED = "2026-11-29T10:00:04Z";

export function job(
  name: string,
  state: "running" | "succeeded" | "failed",
  reason?: string,
  opts: { uid?: string; created?: string; finished?: string; active?: number; deletionTimestamp?: string } = {},
): Job {
  const finished = opts.finished ?? JOB_FINISHED;
  const conditions =
    state === "succeeded"
      ? [{ type: "Complete", status: "True", lastTransitionTime: finished }]
      : state === "failed"
        ? [{ type: "Failed", status: "True", reason: reason ?? "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", lastTransitionTime: finished }]
        : [];
  const uid = opts.uid ?? uidOf("Job", name);
  const active = opts.active ?? (state === "running" ? 1 : 0);
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: NS,
      uid,
      creationTimestamp: opts.created ?? JOB_CREATED,
      labels: { "sandbox.opensandbox.io/sandbox-snapshot-name": "snap1" },
      ...(opts.deletionTimestamp !== undefined ? { deletionTimestamp: opts.deletionTimestamp } : {}),
    },
    spec: { selector: { matchLabels: { "batch.kubernetes.io/controller-uid": uid } } },
    status: {
      ...(active > 0 ? { active } : {}),
      ...(state === "succeeded" ? { succeeded: 1, completionTime: finished } : {}),
      ...(state === "failed" ? { failed: 1 } : {}),
      conditions,
    },
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
