// The test node's pods as the host sees them: cgroup v1 directories under CGROUP_ROOT (the kubelet's
// cgroupfs driver: <root>/kubepods[/<qos>]/pod<uid>/<container id>). The journey reads a sandbox
// container's freezer state (the committer pauses it through containerd → runc → the freezer) and
// SIGKILLs a commit pod's processes while it is frozen, as a crash or the OOM killer would.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { CGROUP_ROOT } from "./node-host.js";

const FREEZER = join("/sys/fs/cgroup/freezer", CGROUP_ROOT);

/** The freezer cgroup directory named `name` (a container id, or `pod<uid>`), if there is one yet. */
export function findFreezerCgroup(name: string, dir = FREEZER, depth = 5): string | undefined {
  if (basename(dir) === name) return dir;
  if (depth === 0) return undefined;
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return undefined; // gone meanwhile
  }
  for (const e of entries) {
    const p = join(dir, e);
    try {
      if (!statSync(p).isDirectory()) continue;
    } catch {
      continue;
    }
    const found = findFreezerCgroup(name, p, depth - 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** `FROZEN`, `FREEZING`, `THAWED`, or undefined when the cgroup is gone. */
export function freezerState(cgroupDir: string): string | undefined {
  try {
    return readFileSync(join(cgroupDir, "freezer.state"), "utf8").trim();
  } catch {
    return undefined;
  }
}

/** The container id of a CRI status's `containerd://<id>`. */
export function containerId(criId: string | undefined): string {
  const id = /^containerd:\/\/([0-9a-f]{64})$/.exec(criId ?? "")?.[1];
  if (id === undefined) throw new Error(`not a containerd container id: ${String(criId)}`);
  return id;
}

/** Processes in a pod's cgroups other than its pause process: what runs its containers. */
export function podProcesses(podUid: string): number[] {
  const podDir = findFreezerCgroup(`pod${podUid}`);
  if (podDir === undefined) return [];
  const pids: number[] = [];
  const visit = (d: string): void => {
    let entries: string[] = [];
    try {
      entries = readdirSync(d);
      for (const line of readFileSync(join(d, "cgroup.procs"), "utf8").split("\n")) {
        const pid = Number(line);
        if (!Number.isInteger(pid) || pid <= 0) continue;
        const cmd = (() => {
          try {
            return readFileSync(`/proc/${String(pid)}/cmdline`, "utf8").split("\0")[0] ?? "";
          } catch {
            return "";
          }
        })();
        if (cmd !== "" && basename(cmd) !== "pause") pids.push(pid);
      }
    } catch {
      return; // gone meanwhile
    }
    for (const e of entries) if (existsSync(join(d, e, "cgroup.procs"))) visit(join(d, e));
  };
  visit(podDir);
  return pids;
}

/** Whether a process still runs (a zombie, killed and not yet reaped, does not). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

export interface FrozenWatch {
  /** performance.now() when the container was first seen FROZEN. */
  readonly frozenAt: number;
  /** What `onFrozen` returned. */
  readonly acted: string;
}

/**
 * Polls a container's freezer state every ~2 ms until it is FROZEN, then calls `onFrozen` at once.
 * Throws when `gaveUp()` says the commit is over without a freeze seen, or after `timeoutMs`.
 */
export async function whenFrozen(cgroupDir: string, onFrozen: () => string | Promise<string>, gaveUp: () => boolean, timeoutMs: number): Promise<FrozenWatch> {
  const deadline = performance.now() + timeoutMs;
  let polls = 0;
  while (performance.now() < deadline) {
    const state = freezerState(cgroupDir);
    // FROZEN only: runc's cgroup v1 freezer, when a freeze stays FREEZING, thaws briefly and retries,
    // so FREEZING is not yet a freeze (a kill seen there landed while the sandbox ran).
    if (state === "FROZEN") {
      const frozenAt = performance.now();
      return { frozenAt, acted: await onFrozen() };
    }
    if (state === undefined) throw new Error(`${cgroupDir} is gone`);
    // Checked now and then: a cheap read of the pod list is still not free.
    if (++polls % 250 === 0 && gaveUp()) throw new Error(`the commit ended before ${cgroupDir} was seen frozen`);
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`${cgroupDir} not frozen within ${String(timeoutMs)} ms`);
}

/** Waits (polling every 20 ms) until the container is THAWED again; returns performance.now() then. */
export async function whenThawed(cgroupDir: string, timeoutMs: number): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (freezerState(cgroupDir) === "THAWED") return performance.now();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${cgroupDir} still ${String(freezerState(cgroupDir))} after ${String(timeoutMs)} ms`);
}
