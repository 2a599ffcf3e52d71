// The commit and unpause Jobs (DESIGN.md "The commit Job" and "Commit Job ↔ committer interface").
// Pure builders: same inputs, same Job.
import type { Job, Pod, SandboxSnapshot } from "../api/types.js";
import type { ControllerConfig } from "../config/config.js";
import { commitArgs, DEFAULT_CONTAINERD_NAMESPACE, DEFAULT_RESULT_PATH, ENV, unpauseArgs } from "../contract/commit-job.js";
import {
  LABEL_COMPONENT,
  LABEL_MANAGED_BY,
  LABEL_PRIVILEGED,
  LABEL_SNAPSHOT_NAME,
  MANAGED_BY,
  commitJobName,
  unpauseJobName,
} from "../reconcile/names.js";

export const SCRATCH_DIR = "/scratch";
export const PUSH_SECRET_DIR = "/var/run/secrets/snapshot-push";
/** The unpause Job's own deadline: it only resumes containers, which takes milliseconds. */
export const UNPAUSE_JOB_DEADLINE_SECONDS = 120;
const CONTAINER_NAME = "committer";

export interface CommitTarget {
  containerName: string;
  imageUri: string;
}

interface JobInput {
  snapshot: SandboxSnapshot;
  podName: string;
  nodeName: string;
  /** The source pod, for its tolerations; absent when it is no longer observed. */
  sourcePod: Pod | undefined;
  /** The source pod's UID as resolved when the snapshot started (default: `sourcePod`'s). */
  sourcePodUid?: string | undefined;
}

function labels(snapshot: string, component: "commit" | "unpause"): Record<string, string> {
  return {
    [LABEL_SNAPSHOT_NAME]: snapshot,
    [LABEL_PRIVILEGED]: "true",
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_COMPONENT]: component,
  };
}

function env(name: string, value: string): { name: string; value: string } {
  return { name, value };
}

function baseJob(
  input: JobInput,
  cfg: ControllerConfig,
  component: "commit" | "unpause",
  args: string[],
  extraEnv: { name: string; value: string }[],
  extraVolumes: object[],
  extraMounts: object[],
  deadlineSeconds: number,
): Job {
  const snap = input.snapshot;
  const name = snap.metadata.name ?? "";
  const jobLabels = labels(name, component);
  const tolerations = input.sourcePod?.spec?.tolerations;
  const podSpec: Record<string, unknown> = {
    nodeName: input.nodeName,
    restartPolicy: "Never",
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    ...(tolerations && tolerations.length > 0 ? { tolerations } : {}),
    ...(cfg.commitJobPriorityClass !== undefined ? { priorityClassName: cfg.commitJobPriorityClass } : {}),
    ...(cfg.committerImagePullSecrets.length > 0
      ? { imagePullSecrets: cfg.committerImagePullSecrets.map((s) => ({ name: s })) }
      : {}),
    containers: [
      {
        name: CONTAINER_NAME,
        image: cfg.committerImage,
        // The image's entrypoint is the committer; arguments only, never a shell.
        args,
        env: [
          env(ENV.CONTAINERD_SOCKET, cfg.containerdSocket),
          env(ENV.CONTAINERD_NAMESPACE, DEFAULT_CONTAINERD_NAMESPACE),
          env(ENV.CONTAINERD_ROOT, cfg.containerdRoot),
          env(ENV.MAX_FREEZE_SECONDS, String(cfg.maxFreezeSeconds)),
          env(ENV.RESULT_PATH, DEFAULT_RESULT_PATH),
          env(ENV.SNAPSHOT_UID, snap.metadata.uid ?? ""),
          env(ENV.SNAPSHOT_NAME, name),
          env(ENV.SNAPSHOT_NAMESPACE, snap.metadata.namespace ?? ""),
          ...extraEnv,
        ],
        resources: {
          requests: { cpu: cfg.commitJobCpu, memory: cfg.commitJobMemory },
          limits: { memory: cfg.commitJobMemory },
        },
        securityContext: { privileged: true },
        terminationMessagePath: DEFAULT_RESULT_PATH,
        terminationMessagePolicy: "FallbackToLogsOnError",
        volumeMounts: [
          { name: "containerd-socket", mountPath: cfg.containerdSocket },
          ...extraMounts,
        ],
      },
    ],
    volumes: [
      { name: "containerd-socket", hostPath: { path: cfg.containerdSocket, type: "Socket" } },
      ...extraVolumes,
    ],
  };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: component === "commit" ? commitJobName(name) : unpauseJobName(name),
      namespace: snap.metadata.namespace ?? "",
      labels: jobLabels,
    },
    spec: {
      // A retry would freeze the sandbox again; the committer retries pushes itself, after unpausing.
      backoffLimit: 0,
      activeDeadlineSeconds: deadlineSeconds,
      template: { metadata: { labels: jobLabels }, spec: podSpec },
    },
  };
}

/** The committer refuses a different pod of the same name when it knows the source pod's UID. */
function podUidEnv(uid: string | undefined): { name: string; value: string }[] {
  return uid !== undefined && uid !== "" ? [env(ENV.SNAPSHOT_POD_UID, uid)] : [];
}

export function commitJob(input: JobInput & { targets: readonly CommitTarget[] }, cfg: ControllerConfig): Job {
  const args = commitArgs(
    input.podName,
    input.snapshot.metadata.namespace ?? "",
    input.targets.map((t) => ({ container: t.containerName, image: t.imageUri })),
  );
  const extraEnv = [
    env(ENV.REGISTRY_INSECURE, String(cfg.registryInsecure)),
    env(ENV.COMPRESSION, cfg.compression),
    env(ENV.SCRATCH_DIR, SCRATCH_DIR),
    env(ENV.SCRATCH_LIMIT_BYTES, String(cfg.scratchLimitBytes)),
    ...(cfg.pushSecret !== undefined ? [env(ENV.DOCKER_CONFIG, PUSH_SECRET_DIR)] : []),
    ...podUidEnv(input.sourcePodUid ?? input.sourcePod?.metadata?.uid),
  ];
  const volumes: object[] = [
    { name: "containerd-root", hostPath: { path: cfg.containerdRoot, type: "Directory" } },
    { name: "scratch", emptyDir: { sizeLimit: cfg.scratchLimit } },
    ...(cfg.pushSecret !== undefined
      ? [
          {
            name: "push-secret",
            secret: { secretName: cfg.pushSecret, items: [{ key: ".dockerconfigjson", path: "config.json" }] },
          },
        ]
      : []),
  ];
  const mounts: object[] = [
    // Same path as on the host: the committer reads overlay upper directories by their host paths.
    { name: "containerd-root", mountPath: cfg.containerdRoot, readOnly: true },
    { name: "scratch", mountPath: SCRATCH_DIR },
    ...(cfg.pushSecret !== undefined ? [{ name: "push-secret", mountPath: PUSH_SECRET_DIR, readOnly: true }] : []),
  ];
  return baseJob(input, cfg, "commit", args, extraEnv, volumes, mounts, cfg.commitJobDeadlineSeconds);
}

export function unpauseJob(input: JobInput & { containers: readonly string[] }, cfg: ControllerConfig): Job {
  const args = unpauseArgs(input.podName, input.snapshot.metadata.namespace ?? "", input.containers);
  return baseJob(input, cfg, "unpause", args, [], [], [], UNPAUSE_JOB_DEADLINE_SECONDS);
}
