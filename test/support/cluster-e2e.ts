// End-to-end environment for test/cluster: the real control plane from cluster.ts, our CRD (crds/),
// a BatchSandbox test CRD, the hook server (started like src/server/main.ts, on 127.0.0.1) and our
// CompositeController (metacontroller/) rewritten to call the hooks by `url:` — Metacontroller runs on
// the host, not in the cluster, so Service DNS names do not resolve.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { KubernetesObject, V1Job, V1Pod } from "@kubernetes/client-node";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import { createKubeAccess } from "../../src/server/kube.js";
import { RESULT_LIMIT } from "../../src/contract/commit-job.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { createCleanupRunner } from "../../src/server/cleanup-runner.js";
import { readManifests, startCluster, waitFor, type Cluster, type ClusterOptions } from "./cluster.js";
import type { Containerd } from "./containerd.js";
import type { TestRegistry } from "./registry.js";

export const SNAPSHOT_CRD_FILE = fileURLToPath(new URL("../../crds/sandboxsnapshot.crd.yaml", import.meta.url));
export const COMPOSITE_CONTROLLER_FILE = fileURLToPath(new URL("../../metacontroller/compositecontroller.yaml", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/committer/cli.ts", import.meta.url));
export const GROUP = "sandbox.opensandbox.io";

/**
 * The client's model classes are plain JSON on the wire; this types a literal as one of them (the
 * strict lint rule otherwise wants instances built by their constructors).
 */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- the point is the cast
export function plain<T>(o: object): T {
  return o as T;
}
export const VERSION = "v1alpha1";
export const SNAPSHOTS = "sandboxsnapshots";
export const SNAPSHOT_CRD = `${SNAPSHOTS}.${GROUP}`;
export const BATCH_SANDBOX_CRD = `batchsandboxes.${GROUP}`;

/** A BatchSandbox CRD with just what DESIGN.md says of OpenSandbox's (test-only, not OpenSandbox's schema). */
export const batchSandboxCrd: KubernetesObject = plain({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: BATCH_SANDBOX_CRD },
  spec: {
    group: GROUP,
    scope: "Namespaced",
    names: { kind: "BatchSandbox", listKind: "BatchSandboxList", plural: "batchsandboxes", singular: "batchsandbox" },
    versions: [
      {
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: "object",
            properties: {
              spec: {
                type: "object",
                properties: {
                  replicas: { type: "integer" },
                  template: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
                },
                "x-kubernetes-preserve-unknown-fields": true,
              },
              status: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
            },
          },
        },
      },
    ],
  },
});

/** The hook server's settings for commits on the test containerd, pushed to the test registry (plain HTTP). */
export function commitEnv(cd: Containerd, reg: TestRegistry, extra: Record<string, string> = {}): Record<string, string> {
  return {
    SNAPSHOT_REGISTRY: `${reg.host}/snapshots`,
    SNAPSHOT_REGISTRY_INSECURE: "true",
    CONTAINERD_SOCKET: cd.socket,
    CONTAINERD_ROOT: cd.root,
    SNAPSHOT_SCRATCH_LIMIT: "1Gi",
    ...extra,
  };
}

/**
 * Our CompositeController with every hook's `service:` replaced by `url: http://127.0.0.1:<port><path>`.
 * Metacontroller v1.5.20 (the release built here) predates the webhook `version` field (v1 hooks are
 * its only behaviour), so the field is dropped rather than left for the API server to prune.
 */
export function compositeControllerFor(hookPort: number): KubernetesObject {
  const [cc] = readManifests(COMPOSITE_CONTROLLER_FILE).filter((o) => o.kind === "CompositeController");
  if (!cc) throw new Error(`${COMPOSITE_CONTROLLER_FILE} holds no CompositeController`);
  const copy = structuredClone(cc) as KubernetesObject & { spec: { hooks: Record<string, { webhook: Record<string, unknown> }> } };
  for (const [hook, h] of Object.entries(copy.spec.hooks)) {
    const wh = h.webhook;
    const path = typeof wh.path === "string" ? wh.path : `/${hook}`;
    delete wh.service;
    delete wh.path;
    delete wh.version;
    wh.url = `http://127.0.0.1:${String(hookPort)}${path}`;
  }
  return copy;
}

export interface E2E {
  cluster: Cluster;
  hooks: RunningServer;
  config: ControllerConfig;
  /** Hook server log lines (JSON), for diagnostics. */
  hookLog: string[];
  stop(): Promise<void>;
}

export interface E2EOptions extends ClusterOptions {
  /** Extra hook-server settings (environment variables of DESIGN.md "Configuration"). */
  env?: Record<string, string>;
}

/** Starts the cluster, installs the CRDs and the CompositeController, and starts the hook server. */
export async function startE2E(opts: E2EOptions = {}): Promise<E2E> {
  const cluster = await startCluster(opts);
  let hooks: RunningServer | undefined;
  try {
    await cluster.apply([...readManifests(SNAPSHOT_CRD_FILE), batchSandboxCrd]);
    await cluster.waitForCrds([SNAPSHOT_CRD, BATCH_SANDBOX_CRD]);

    const config = loadConfig({
      HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
      METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
      SNAPSHOT_REGISTRY: "127.0.0.1:5999/snapshots",
      SNAPSHOT_REGISTRY_INSECURE: "true",
      COMMITTER_IMAGE: "localhost/test/image-committer:e2e",
      LOG_LEVEL: "debug",
      ...opts.env,
    });
    const hookLog: string[] = [];
    const log = pino(
      { level: config.logLevel, base: { component: "sandbox-snapshot-hooks" } },
      {
        write: (line: string) => {
          hookLog.push(line.trimEnd());
          if (hookLog.length > 2000) hookLog.splice(0, hookLog.length - 2000);
        },
      },
    );
    const kube = createKubeAccess(cluster.kc);
    // Finalize re-reads the snapshot through the API before deleting; commits are verified in the registry.
    const cleanup = await createCleanupRunner(config, { log, kube });
    const verifier = await createImageVerifier(config, { log });
    // The API server stamps real times on the objects it serves: decide with the real clock.
    hooks = await startServer(config, { log, kube, cleanup, verifier, clock: () => new Date() });
    await cluster.apply([compositeControllerFor(hooks.hookPort)]);
    const running = hooks;
    return {
      cluster,
      hooks: running,
      config,
      hookLog,
      stop: async () => {
        // Metacontroller first, so it stops calling hooks that are about to go away.
        await cluster.stopMetacontroller();
        await running.close();
        await cluster.stop();
      },
    };
  } catch (err) {
    if (hooks) await hooks.close();
    await cluster.stop();
    throw err;
  }
}

export type Snapshot = KubernetesObject & {
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    sourcePodName?: string;
    sourceNodeName?: string;
    deletionPolicy?: string;
    containers?: { containerName: string; imageUri?: string; imageDigest?: string; sizeBytes?: number }[];
    conditions?: { type: string; status: string; reason?: string; message?: string; lastTransitionTime?: string }[];
    cleanup?: Record<string, unknown>;
    freezeMillis?: number;
  };
};

export function snapshotObject(namespace: string, name: string, spec: Record<string, unknown>): Snapshot {
  return plain<Snapshot>({ apiVersion: `${GROUP}/${VERSION}`, kind: "SandboxSnapshot", metadata: { name, namespace }, spec });
}

export async function createSnapshot(c: Cluster, s: Snapshot): Promise<Snapshot> {
  return (await c.custom.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: s.metadata?.namespace ?? "",
    plural: SNAPSHOTS,
    body: s,
  })) as Snapshot;
}

export async function getSnapshot(c: Cluster, namespace: string, name: string): Promise<Snapshot | undefined> {
  try {
    return (await c.custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: SNAPSHOTS, name })) as Snapshot;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

export function isNotFound(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === 404;
}

/** Waits until the snapshot's status satisfies `pred`; the error names the last status seen. */
export async function waitForSnapshot(
  e: E2E,
  namespace: string,
  name: string,
  what: string,
  pred: (s: Snapshot) => boolean,
  timeoutMs = 60_000,
): Promise<Snapshot> {
  let last: Snapshot | undefined;
  try {
    return await waitFor(
      `SandboxSnapshot ${namespace}/${name}: ${what}`,
      async () => {
        last = await getSnapshot(e.cluster, namespace, name);
        return last && pred(last) ? last : undefined;
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    const events = await e.cluster.core
      .listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` })
      .then((l) => l.items.map((ev) => `${ev.type ?? ""} ${ev.reason ?? ""}: ${ev.message ?? ""}`).join("\n"))
      .catch(() => "");
    throw new Error(
      `${err instanceof Error ? err.message : String(err)}\nlast status: ${JSON.stringify(last?.status)}\nevents:\n${events}\n` +
        `metacontroller log (tail):\n${e.cluster.logTail("metacontroller", 25)}\nhook log (tail):\n${e.hookLog.slice(-15).join("\n")}`,
      { cause: err },
    );
  }
}

/** A pod as a kubelet would have it: bound to `nodeName`, Running, its containers with containerd ids. */
export async function createRunningPod(
  c: Cluster,
  namespace: string,
  name: string,
  nodeName: string,
  containers: string[],
  labels: Record<string, string> = {},
  containerIds: Record<string, string> = {},
  /** The controller that created the pod (OpenSandbox's BatchSandbox controller sets one on its pods). */
  controller?: { apiVersion: string; kind: string; name: string; uid: string },
): Promise<V1Pod> {
  await c.core.createNamespacedPod({
    namespace,
    body: plain({
      metadata: {
        name,
        namespace,
        labels,
        ...(controller !== undefined ? { ownerReferences: [{ ...controller, controller: true, blockOwnerDeletion: true }] } : {}),
      },
      spec: {
        nodeName,
        containers: containers.map((n) => ({ name: n, image: "localhost/test/busybox:1", command: ["/bin/sleep", "100000"] })),
      },
    }),
  });
  const now = new Date();
  return setPodStatus(c, namespace, name, plain({
    phase: "Running",
    conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }],
    startTime: now,
    containerStatuses: containers.map((n) => ({
      name: n,
      image: "localhost/test/busybox:1",
      imageID: "",
      ready: true,
      restartCount: 0,
      started: true,
      containerID: `containerd://${containerIds[n] ?? `${name}-${n}`}`,
      state: { running: { startedAt: now } },
    })),
  }));
}

/** Replaces a pod's status through the status subresource (the kubelet's part). */
export async function setPodStatus(c: Cluster, namespace: string, name: string, status: NonNullable<V1Pod["status"]>): Promise<V1Pod> {
  const pod = await c.core.readNamespacedPod({ namespace, name });
  pod.status = status;
  return c.core.replaceNamespacedPodStatus({ namespace, name, body: pod });
}

export async function createNamespace(c: Cluster, name: string): Promise<void> {
  await c.core.createNamespace({ body: plain({ metadata: { name } }) });
  // Pods need the namespace's default ServiceAccount (ServiceAccount admission).
  await waitFor(`ServiceAccount ${name}/default`, async () => {
    await c.core.readNamespacedServiceAccount({ namespace: name, name: "default" });
    return true;
  });
}

export async function createNode(c: Cluster, name: string): Promise<void> {
  await c.core.createNode({ body: plain({ metadata: { name, labels: { "kubernetes.io/hostname": name } } }) });
}

export interface CommitterRun {
  code: number | null;
  result: string;
  stderr: string;
}

// ---- The kubelet's part, played by the tests ----

/**
 * Runs the real committer as the commit Job's container would: the Job's arguments and environment,
 * with what a kubelet maps pointed at temp files on this host — the termination-message file, the
 * scratch emptyDir, and Secret volumes (read from the API and written out; an env value naming the
 * mount path, like DOCKER_CONFIG, follows it).
 */
export async function runCommitter(e: E2E, job: V1Job): Promise<CommitterRun> {
  const c = job.spec?.template.spec?.containers[0];
  if (!c) throw new Error("Job has no container");
  const dir = mkdtempSync(join(tmpdir(), "committer-"));
  const resultPath = join(dir, "termination-log");
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" };
  for (const e of c.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
  const volumes = new Map((job.spec?.template.spec?.volumes ?? []).map((v) => [v.name, v]));
  const namespace = job.metadata?.namespace ?? "";
  let n = 0;
  for (const m of c.volumeMounts ?? []) {
    const secret = volumes.get(m.name)?.secret;
    if (!secret?.secretName) continue;
    const local = join(dir, `secret-${String(n++)}`);
    mkdirSync(local);
    const data = (await e.cluster.core.readNamespacedSecret({ namespace, name: secret.secretName })).data ?? {};
    const items: { key: string; path: string }[] = secret.items?.map((i) => ({ key: i.key, path: i.path })) ?? Object.keys(data).map((key) => ({ key, path: key }));
    for (const it of items) writeFileSync(join(local, it.path), Buffer.from(data[it.key] ?? "", "base64"), { mode: 0o600 });
    for (const [k, v] of Object.entries(env)) if (v === m.mountPath) env[k] = local;
  }
  env.SNAPSHOT_RESULT_PATH = resultPath;
  env.SNAPSHOT_SCRATCH_DIR = join(dir, "scratch");
  mkdirSync(env.SNAPSHOT_SCRATCH_DIR); // the Job's emptyDir
  try {
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...(c.args ?? [])], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => (stderr += d));
    child.stdout.resume();
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    let result = "";
    try {
      result = readFileSync(resultPath, "utf8");
    } catch {
      // no result file: the kubelet would fall back to the log tail (FallbackToLogsOnError)
      result = stderr.split("\n").slice(-20).join("\n");
    }
    return { code, result, stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Plays the kubelet: the Job's pod ran to completion with this exit code and termination message,
 * cut to the 4096 bytes a kubelet keeps (so a result over the budget arrives truncated, as it would).
 */
export async function finishJobPod(e: E2E, namespace: string, pod: V1Pod, exitCode: number, fullMessage: string): Promise<void> {
  const message = Buffer.from(fullMessage).subarray(0, RESULT_LIMIT).toString();
  const name = pod.metadata?.name ?? "";
  const started = new Date(Date.now() - 1000);
  const finished = new Date();
  const container = pod.spec?.containers[0]?.name ?? "committer";
  await setPodStatus(
    e.cluster,
    namespace,
    name,
    plain({
      phase: exitCode === 0 ? "Succeeded" : "Failed",
      startTime: started,
      conditions: [{ type: "Ready", status: "False", reason: "PodCompleted", lastTransitionTime: finished }],
      containerStatuses: [
        {
          name: container,
          image: pod.spec?.containers[0]?.image ?? "",
          imageID: "",
          ready: false,
          restartCount: 0,
          started: false,
          containerID: `containerd://${name}`,
          state: {
            terminated: {
              exitCode,
              reason: exitCode === 0 ? "Completed" : "Error",
              message,
              startedAt: started,
              finishedAt: finished,
            },
          },
        },
      ],
    }),
  );
}

export async function waitForJob(e: E2E, namespace: string, name: string, timeoutMs = 60_000): Promise<V1Job> {
  return waitFor(`Job ${namespace}/${name}`, async () => e.cluster.batch.readNamespacedJob({ namespace, name }), timeoutMs);
}

/** The pod the Job controller created for Job `job` (controlled by it: planted look-alikes are skipped). */
export async function waitForJobPod(e: E2E, namespace: string, job: string): Promise<V1Pod> {
  return waitFor(`pod of Job ${namespace}/${job}`, async () => {
    const l = await e.cluster.core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` });
    return l.items.find((p) => p.metadata?.ownerReferences?.some((o) => o.controller === true && o.kind === "Job" && o.name === job) === true);
  }, 60_000);
}

export async function waitForJobGone(e: E2E, namespace: string, name: string): Promise<void> {
  await waitFor(`Job ${namespace}/${name} deleted`, async () => {
    try {
      await e.cluster.batch.readNamespacedJob({ namespace, name });
      return false;
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
  }, 60_000);
}

export function jobCondition(job: V1Job, type: string): boolean {
  return job.status?.conditions?.some((c) => c.type === type && c.status === "True") === true;
}
