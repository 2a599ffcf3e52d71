// Finding a pod's containers in containerd by their CRI labels, and checking that their root
// filesystem changes can be captured.
import type { ContainerdClient } from "../containerd/client.js";
import type { Container, ProcessStatus } from "../containerd/types.js";

export const LABEL_POD_NAME = "io.kubernetes.pod.name";
export const LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace";
export const LABEL_CONTAINER_NAME = "io.kubernetes.container.name";
export const LABEL_POD_UID = "io.kubernetes.pod.uid";
export const LABEL_CRI_KIND = "io.cri-containerd.kind";

export interface TargetContainer {
  /** The Kubernetes container name. */
  readonly name: string;
  /** containerd's container id. */
  readonly id: string;
  readonly image: string;
  readonly snapshotter: string;
  readonly snapshotKey: string;
  readonly runtime: string;
  readonly status: ProcessStatus | undefined;
  /** The CRI pod UID label (io.kubernetes.pod.uid), when the container has one. */
  readonly podUid: string | undefined;
}

/** A container of the pod that is not captured. */
export interface PodContainer {
  readonly name: string;
  readonly id: string;
}

export class LookupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LookupError";
  }
}

/** containerd filter value, quoted (strconv-style) so any character is safe. */
function quote(v: string): string {
  return JSON.stringify(v);
}

/**
 * Runtimes whose root-filesystem writes land in the overlay upper directory on the host. runc (and
 * drop-in OCI runtimes configured through the runc shim, e.g. crun) do; sandboxed runtimes such as
 * gVisor (runsc) and Kata keep them inside the sandbox, so a capture would silently miss them.
 */
export function checkRuntime(runtime: string): string | undefined {
  if (/^io\.containerd\.runc\.v[12]$/.test(runtime) || runtime === "io.containerd.runtime.v1.linux") return undefined;
  if (/runsc|gvisor/i.test(runtime)) {
    return `runtime ${runtime} (gVisor) keeps the container's file changes inside the sandbox, not in the overlay upper directory; snapshots need a runc-based runtime`;
  }
  if (/kata/i.test(runtime)) {
    return `runtime ${runtime} (Kata Containers) keeps the container's file changes inside the VM, not in the overlay upper directory; snapshots need a runc-based runtime`;
  }
  return `runtime ${runtime} is not supported: only runc-based runtimes (io.containerd.runc.v2) write the root filesystem changes to the snapshotter's upper directory`;
}

function created(c: Container): number {
  return c.created_at === null ? 0 : c.created_at.seconds * 1e3 + c.created_at.nanos / 1e6;
}

type Attempt = { container: Container; status: ProcessStatus | undefined };

/** The (non-sandbox) containers of a pod — with one container name only when given — with task status. */
async function podContainers(client: ContainerdClient, pod: string, namespace: string, container?: string): Promise<Attempt[]> {
  const labels: [string, string][] = [
    [LABEL_POD_NAME, pod],
    [LABEL_POD_NAMESPACE, namespace],
    ...(container !== undefined ? ([[LABEL_CONTAINER_NAME, container]] as [string, string][]) : []),
  ];
  const filter = labels.map(([k, v]) => `labels.${quote(k)}==${quote(v)}`).join(",");
  const found = (await client.listContainers([filter])).filter((c) => c.labels[LABEL_CRI_KIND] !== "sandbox" && labels.every(([k, v]) => c.labels[k] === v));
  return Promise.all(found.map(async (c) => ({ container: c, status: await client.taskStatus(c.id) })));
}

/** All (non-sandbox) containers of a pod with a given container name, newest first, with task status. */
export async function podContainerAttempts(client: ContainerdClient, pod: string, namespace: string, container: string): Promise<Attempt[]> {
  return (await podContainers(client, pod, namespace, container)).sort((a, b) => created(b.container) - created(a.container));
}

/**
 * Resolves each container name to the attempt that is running (or paused), and checks its runtime.
 * With `podUid` (SNAPSHOT_POD_UID) only containers of that pod count: a pod recreated under the same
 * name (a StatefulSet's `<name>-0`) is another sandbox. Throws a LookupError naming what is missing.
 */
export async function findTargets(
  client: ContainerdClient,
  pod: string,
  namespace: string,
  names: readonly string[],
  podUid?: string,
): Promise<TargetContainer[]> {
  const targets: TargetContainer[] = [];
  for (const name of names) {
    const all = await podContainerAttempts(client, pod, namespace, name);
    const attempts = podUid === undefined ? all : all.filter((a) => a.container.labels[LABEL_POD_UID] === podUid);
    if (podUid !== undefined && attempts.length === 0 && all.length > 0) {
      const others = [...new Set(all.map((a) => a.container.labels[LABEL_POD_UID] ?? "none"))].join(", ");
      throw new LookupError(
        `container ${name} of pod ${namespace}/${pod} belongs to pod UID ${others} (CRI label ${LABEL_POD_UID}), not to the snapshot's source pod UID ${podUid} (SNAPSHOT_POD_UID): the pod was recreated under the same name; refusing to snapshot a different pod`,
      );
    }
    if (attempts.length === 0) {
      throw new LookupError(
        `container ${name} of pod ${namespace}/${pod} not found in containerd namespace ${client.namespace} (no container with CRI labels ${LABEL_POD_NAME}=${pod}, ${LABEL_POD_NAMESPACE}=${namespace}, ${LABEL_CONTAINER_NAME}=${name})`,
      );
    }
    const live = attempts.find((a) => a.status === "RUNNING" || a.status === "PAUSED" || a.status === "PAUSING");
    if (live === undefined) {
      const states = attempts.map((a) => `${a.container.id}: ${a.status ?? "no task"}`).join(", ");
      throw new LookupError(`container ${name} of pod ${namespace}/${pod} is not running (${states})`);
    }
    const c = live.container;
    const runtime = c.runtime?.name ?? "";
    const bad = checkRuntime(runtime);
    if (bad !== undefined) throw new LookupError(`container ${name} of pod ${namespace}/${pod}: ${bad}`);
    if (c.snapshot_key === "" || c.snapshotter === "") {
      throw new LookupError(`container ${name} of pod ${namespace}/${pod} has no snapshot (snapshotter/snapshotKey empty)`);
    }
    targets.push({
      name,
      id: c.id,
      image: c.image,
      snapshotter: c.snapshotter,
      snapshotKey: c.snapshot_key,
      runtime,
      status: live.status,
      podUid: c.labels[LABEL_POD_UID],
    });
  }
  return targets;
}

/**
 * The pod's other running containers — sidecars not listed, ephemeral debug containers — of the same
 * pod (UID) as the targets. They are paused with the targets though not captured: a container that
 * shares the pod's process namespace reaches a target's root filesystem through /proc/<pid>/root, and
 * could otherwise change it (swap a directory for a symlink) while the frozen walk and read trust it.
 */
export async function podCompanions(client: ContainerdClient, pod: string, namespace: string, targets: readonly TargetContainer[]): Promise<PodContainer[]> {
  const ids = new Set(targets.map((t) => t.id));
  const uids = new Set(targets.map((t) => t.podUid));
  return (await podContainers(client, pod, namespace))
    .filter((a) => !ids.has(a.container.id) && uids.has(a.container.labels[LABEL_POD_UID]) && a.status === "RUNNING")
    .map((a) => ({ name: a.container.labels[LABEL_CONTAINER_NAME] ?? a.container.id, id: a.container.id }));
}

/** The pod's paused containers that are not among `names` (the companions a commit may have paused). */
export async function pausedCompanions(client: ContainerdClient, pod: string, namespace: string, names: readonly string[]): Promise<PodContainer[]> {
  const listed = new Set(names);
  return (await podContainers(client, pod, namespace))
    .filter((a) => !listed.has(a.container.labels[LABEL_CONTAINER_NAME] ?? "") && (a.status === "PAUSED" || a.status === "PAUSING"))
    .map((a) => ({ name: a.container.labels[LABEL_CONTAINER_NAME] ?? a.container.id, id: a.container.id }));
}
