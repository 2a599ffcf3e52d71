// Sync requests as Metacontroller sends them for our rules, for the hook-server benchmark: a
// BatchSandbox-backed snapshot of a 3-container pod whose commit failed and whose unpause Job runs —
// the parent with a 3-container status, the BatchSandbox, 2 Pods (source and unpause) with the
// managedFields the API server keeps, 2 Jobs (commit and unpause) as the API server returns them.
// Built with test/support/fixtures.ts and the real reconcile core (so the parent's status is the
// core's fixpoint), then enriched with the server-side fields a real cluster adds.
//
// Distinct parents: the snapshot is named `osb-snap-<32 hex>` (its image tag is those hex digits),
// so replacing the hex, the UID and the sandbox name everywhere gives a fully consistent request
// for another parent; `renderPayload(i)` does that with a split/join, cheap enough for a load loop.
import { createHash } from "node:crypto";
import type { Job, Pod, SyncRequest } from "../src/api/types.js";
import { loadConfig, type ControllerConfig } from "../src/config/config.js";
import { sync } from "../src/reconcile/sync.js";
import { batchSandbox, jobPod, pod, request, snapshot } from "../test/support/fixtures.js";

const HEX = "c0ffee00c0ffee00c0ffee00c0ffee00";
const UID = "b3a1c2d4-0000-4000-8000-00000000b3a1";
const SBX = "sbxbench";
const NS = "sandboxes";
const CONTAINERS = ["sandbox", "browser", "sidecar"];

/** The controller settings the benchmark server runs with (the payloads are fixpoints under them). */
export const BENCH_ENV: Readonly<Record<string, string>> = {
  SNAPSHOT_REGISTRY: "registry.example.com/snapshots",
  SOURCE_WAIT_SECONDS: "300",
  LOG_LEVEL: "info",
};

export function benchConfig(extra: Record<string, string> = {}): ControllerConfig {
  return loadConfig({ ...BENCH_ENV, ...extra });
}

const iso = (d: Date): string => d.toISOString().replace(/\.\d{3}Z$/, "Z");

function fieldsV1(keys: string[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const k of keys) o[k] = {};
  return o;
}

function managedFieldsPod(containers: string[], at: string): unknown[] {
  const spec: Record<string, unknown> = {
    "f:containers": Object.fromEntries(
      containers.map((c) => [
        `k:{"name":"${c}"}`,
        {
          ".": {},
          ...fieldsV1(["f:image", "f:imagePullPolicy", "f:name", "f:resources", "f:terminationMessagePath", "f:terminationMessagePolicy"]),
          "f:env": { '.': {}, 'k:{"name":"SANDBOX_ID"}': { ".": {}, "f:name": {}, "f:value": {} } },
          "f:ports": { ".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': { ".": {}, "f:containerPort": {}, "f:protocol": {} } },
          "f:volumeMounts": { ".": {}, 'k:{"mountPath":"/workspace"}': { ".": {}, "f:mountPath": {}, "f:name": {} } },
        },
      ]),
    ),
    ...fieldsV1(["f:dnsPolicy", "f:enableServiceLinks", "f:restartPolicy", "f:schedulerName", "f:securityContext", "f:terminationGracePeriodSeconds"]),
    "f:volumes": { ".": {}, 'k:{"name":"workspace"}': { ".": {}, "f:emptyDir": {}, "f:name": {} } },
  };
  return [
    {
      manager: "batchsandbox-controller",
      operation: "Update",
      apiVersion: "v1",
      time: at,
      fieldsType: "FieldsV1",
      fieldsV1: {
        "f:metadata": { "f:annotations": { ".": {}, "f:sandbox.opensandbox.io/pool": {} }, "f:labels": { ".": {}, "f:app": {}, "f:batch-sandbox.sandbox.opensandbox.io/name": {} }, "f:ownerReferences": { ".": {}, 'k:{"uid":"1f0e"}': {} } },
        "f:spec": spec,
      },
    },
    {
      manager: "kubelet",
      operation: "Update",
      apiVersion: "v1",
      time: at,
      fieldsType: "FieldsV1",
      subresource: "status",
      fieldsV1: {
        "f:status": {
          "f:conditions": Object.fromEntries(
            ["ContainersReady", "Initialized", "PodReadyToStartContainers", "PodScheduled", "Ready"].map((t) => [
              `k:{"type":"${t}"}`,
              { ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {} },
            ]),
          ),
          ...fieldsV1(["f:containerStatuses", "f:hostIP", "f:hostIPs", "f:phase", "f:podIP", "f:podIPs", "f:startTime"]),
        },
      },
    },
  ];
}

/** A Pod as the API server returns it: the fixture's essentials plus what a real cluster adds. */
function enrichPod(p: Pod, uid: string, at: string, image: (c: string) => string): Pod {
  const names = (p.spec?.containers ?? []).map((c) => c.name);
  const out = structuredClone(p) as Pod & Record<string, unknown>;
  out.metadata = {
    ...out.metadata,
    uid,
    resourceVersion: "48213377",
    creationTimestamp: at,
    generateName: `${p.metadata?.name ?? "pod"}-`,
    annotations: { "sandbox.opensandbox.io/pool": "default", "kubectl.kubernetes.io/default-container": names[0] ?? "" },
    ownerReferences: [{ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "BatchSandbox", name: SBX, uid: "1f0e", controller: true, blockOwnerDeletion: true }],
    managedFields: managedFieldsPod(names, at),
  };
  const spec = out.spec as Record<string, unknown> & { containers: Record<string, unknown>[] };
  spec.containers = spec.containers.map((c) => ({
    ...c,
    image: image(String(c.name)),
    imagePullPolicy: "IfNotPresent",
    env: [{ name: "SANDBOX_ID", value: SBX }],
    ports: [{ containerPort: 8080, protocol: "TCP" }],
    resources: { limits: { cpu: "2", memory: "4Gi" }, requests: { cpu: "500m", memory: "1Gi" } },
    terminationMessagePath: "/dev/termination-log",
    terminationMessagePolicy: "File",
    volumeMounts: [
      { name: "workspace", mountPath: "/workspace" },
      { name: "kube-api-access-x2x9k", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true },
    ],
  }));
  Object.assign(spec, {
    dnsPolicy: "ClusterFirst",
    enableServiceLinks: true,
    preemptionPolicy: "PreemptLowerPriority",
    priority: 0,
    restartPolicy: "Always",
    schedulerName: "default-scheduler",
    securityContext: {},
    serviceAccount: "default",
    serviceAccountName: "default",
    terminationGracePeriodSeconds: 30,
    tolerations: [
      { effect: "NoExecute", key: "node.kubernetes.io/not-ready", operator: "Exists", tolerationSeconds: 300 },
      { effect: "NoExecute", key: "node.kubernetes.io/unreachable", operator: "Exists", tolerationSeconds: 300 },
    ],
    volumes: [
      { name: "workspace", emptyDir: {} },
      {
        name: "kube-api-access-x2x9k",
        projected: {
          defaultMode: 420,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
            { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
            { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
          ],
        },
      },
    ],
  });
  const status = out.status as Record<string, unknown>;
  const prevStatuses = (status.containerStatuses as Record<string, unknown>[] | undefined) ?? [];
  Object.assign(status, {
    conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
      type,
      status: "True",
      lastProbeTime: null,
      lastTransitionTime: at,
    })),
    hostIP: "10.0.3.17",
    hostIPs: [{ ip: "10.0.3.17" }],
    podIP: "10.244.2.41",
    podIPs: [{ ip: "10.244.2.41" }],
    qosClass: "Burstable",
    startTime: at,
    containerStatuses:
      prevStatuses.length > 0
        ? prevStatuses
        : names.map((name) => ({
            name,
            containerID: `containerd://${createHash("sha256").update(uid + name).digest("hex")}`,
            image: image(name),
            imageID: `${image(name).split(":")[0] ?? ""}@sha256:${createHash("sha256").update(name).digest("hex")}`,
            ready: true,
            restartCount: 0,
            started: true,
            state: { running: { startedAt: at } },
            lastState: {},
          })),
  });
  return out;
}

/** A Job as the API server returns it: the hook's desired Job plus metadata, defaults and status. */
function enrichJob(desired: Record<string, unknown>, uid: string, at: string, status: Record<string, unknown>): Job {
  const j = structuredClone(desired) as Record<string, unknown> & { metadata: Record<string, unknown>; spec: Record<string, unknown> };
  j.metadata = {
    ...j.metadata,
    uid,
    resourceVersion: "48213391",
    generation: 1,
    creationTimestamp: at,
    ownerReferences: [{ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "SandboxSnapshot", name: `osb-snap-${HEX}`, uid: UID, controller: true, blockOwnerDeletion: true }],
    managedFields: [
      { manager: "metacontroller", operation: "Update", apiVersion: "batch/v1", time: at, fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:labels": {}, "f:ownerReferences": {} }, "f:spec": { "f:activeDeadlineSeconds": {}, "f:backoffLimit": {}, "f:template": {} } } },
      { manager: "kube-controller-manager", operation: "Update", apiVersion: "batch/v1", time: at, fieldsType: "FieldsV1", subresource: "status", fieldsV1: { "f:status": { "f:active": {}, "f:ready": {}, "f:startTime": {}, "f:terminating": {}, "f:uncountedTerminatedPods": {} } } },
    ],
  };
  Object.assign(j.spec, { completionMode: "NonIndexed", completions: 1, manualSelector: false, parallelism: 1, podReplacementPolicy: "TerminatingOrFailed", suspend: false, selector: { matchLabels: { "controller-uid": uid } } });
  j.status = status;
  return j as unknown as Job;
}

export interface PayloadTemplate {
  /** The request for parent 0, as JSON. */
  readonly json: string;
  readonly bytes: number;
  /** Request JSON for parent `i` (distinct name, UID, sandbox, pods, image references). */
  render(i: number): string;
  /** The status the hook answers with for parent 0 (a fixpoint). */
  readonly expectedStatus: unknown;
}

function hexFor(i: number): string {
  return createHash("md5").update(`parent-${i}`).digest("hex");
}

export function buildPayloadTemplate(now = new Date()): PayloadTemplate {
  const cfg = benchConfig();
  const at = iso(new Date(now.getTime() - 60_000));
  const name = `osb-snap-${HEX}`;
  const image = (c: string): string => `registry.example.com/sandbox/${c}:2026.11`;
  const bs = batchSandbox(SBX, { allocPods: [`${SBX}-0`], generation: 3 });
  Object.assign(bs.metadata ?? {}, { uid: "1f0e", resourceVersion: "48212001", creationTimestamp: at });
  const src = enrichPod(pod(`${SBX}-0`, { containers: CONTAINERS, labels: { app: "sandbox", "batch-sandbox.sandbox.opensandbox.io/name": SBX } }), "5a1d-src", at, image);
  const parent0 = snapshot({ sandboxName: SBX }, { name });
  parent0.metadata.uid = UID;
  parent0.metadata.creationTimestamp = at;
  Object.assign(parent0.metadata, { resourceVersion: "48213000", finalizers: ["metacontroller.io/compositecontroller-sandbox-snapshot-controller"] });

  // Pending → Committing: the commit Job the hook asks for.
  const r1 = sync(request(parent0, { pods: [src], batchSandboxes: [bs] }), cfg, now);
  const commitDesired = r1.children.find((c) => String(c.metadata.name).endsWith("-commit"));
  if (r1.status.phase !== "Committing" || commitDesired === undefined) throw new Error(`bench payload: expected Committing with a commit Job, got ${JSON.stringify(r1.status.phase)}`);
  const commitJob = enrichJob(commitDesired, "c0c0-commit", at, {
    failed: 1,
    startTime: at,
    ready: 0,
    terminating: 0,
    uncountedTerminatedPods: {},
    conditions: [
      { type: "FailureTarget", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", lastProbeTime: at, lastTransitionTime: at },
      { type: "Failed", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", lastProbeTime: at, lastTransitionTime: at },
    ],
  });
  const commitPod = enrichPod(jobPod(`${name}-commit`, "Failed", '{"error":"push to registry.example.com failed: 503 Service Unavailable"}'), "c0c0-pod", at, () => "ghcr.io/sandbox-snapshot/image-committer:0.1.0");
  const parent1 = { ...parent0, status: r1.status };

  // Committing → Failed: the unpause Job the hook asks for.
  const r2 = sync(request(parent1, { pods: [src, commitPod], batchSandboxes: [bs], jobs: [commitJob] }), cfg, now);
  const unpauseDesired = r2.children.find((c) => String(c.metadata.name).endsWith("-unpause"));
  if (r2.status.phase !== "Failed" || unpauseDesired === undefined) throw new Error(`bench payload: expected Failed with an unpause Job, got ${JSON.stringify(r2.status.phase)}`);
  const unpauseJob = enrichJob(unpauseDesired, "d0d0-unpause", at, {
    active: 1,
    ready: 1,
    startTime: at,
    terminating: 0,
    uncountedTerminatedPods: {},
  });
  const unpausePod = enrichPod(jobPod(`${name}-unpause`, "Running"), "d0d0-pod", at, () => "ghcr.io/sandbox-snapshot/image-committer:0.1.0");

  // Failed with the unpause Job running: the world the benchmark sends, at the core's fixpoint.
  let parent2 = { ...parent0, status: r2.status };
  let req: SyncRequest = request(parent2, { pods: [src, unpausePod], batchSandboxes: [bs], jobs: [commitJob, unpauseJob] });
  const r3 = sync(req, cfg, now);
  parent2 = { ...parent0, status: r3.status };
  req = request(parent2, { pods: [src, unpausePod], batchSandboxes: [bs], jobs: [commitJob, unpauseJob] });
  const r4 = sync(req, cfg, now);
  if (JSON.stringify(r4.status) !== JSON.stringify(r3.status)) throw new Error("bench payload: the status is not a fixpoint");
  if ((r3.status.containers ?? []).length !== 3) throw new Error("bench payload: expected a 3-container status");

  const json = JSON.stringify(req);
  if (!json.includes(HEX) || !json.includes(UID)) throw new Error("bench payload: template tokens missing");
  const parts = json.split(HEX).map((p) => p.split(UID).map((q) => q.split(SBX)));
  const render = (i: number): string => {
    if (i === 0) return json;
    const hex = hexFor(i);
    const uid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
    const sbx = `sbx${hex.slice(0, 5)}`;
    return parts.map((p) => p.map((q) => q.join(sbx)).join(uid)).join(hex);
  };
  return { json, bytes: Buffer.byteLength(json), render, expectedStatus: r3.status };
}

export const PAYLOAD_NAMESPACE = NS;
