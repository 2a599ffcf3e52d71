// A real containerd for integration tests: own root, state and socket in a temp dir; a locally built
// busybox base image imported; helpers to run containers with a pod's CRI labels, exec into them and
// read task status. Everything it starts is stopped by process id, overlay mounts under the temp dir
// are unmounted before it is removed — on stop(), and on process exit as a last resort.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { BASE_IMAGE, buildBaseImage } from "./base-image.js";
import { CONTAINER_START_BUDGET_MS, STARTUP_BUDGET_MS } from "./budgets.js";

const run = promisify(execFile);

export const TEST_NAMESPACE = "k8s.io";

/**
 * A directory with other containerd, ctr and containerd-shim-runc-v2 binaries (e.g. a containerd 2.x
 * built from source) to run the suites against instead of the ones on PATH.
 */
const BIN_DIR = process.env.TEST_CONTAINERD_BIN_DIR;
const bin = (name: string): string => (BIN_DIR !== undefined && BIN_DIR !== "" ? join(BIN_DIR, name) : name);
const childEnv = (extra?: string): NodeJS.ProcessEnv => {
  const dirs = [extra, BIN_DIR].filter((d): d is string => d !== undefined && d !== "");
  return dirs.length === 0 ? process.env : { ...process.env, PATH: `${dirs.join(":")}:${process.env.PATH ?? ""}` };
};

/**
 * Runtimes the committer must refuse, made runnable for tests: containerd maps the runtime name
 * `io.containerd.<x>.<v>` to the binary `containerd-shim-<x>-<v>` on its PATH, so these aliases of the
 * runc shim start ordinary runc containers that carry a gVisor or Kata runtime name.
 */
export const FAKE_RUNTIMES = ["io.containerd.runsc.v1", "io.containerd.kata.v2"] as const;

function shimAliases(dir: string): string {
  const aliasDir = join(dir, "bin");
  mkdirSync(aliasDir, { recursive: true });
  const shim =
    BIN_DIR !== undefined && BIN_DIR !== ""
      ? join(BIN_DIR, "containerd-shim-runc-v2")
      : execFileSync("bash", ["-c", "command -v containerd-shim-runc-v2"], { encoding: "utf8" }).trim();
  for (const rt of FAKE_RUNTIMES) {
    const [, name, version] = rt.split(".").slice(1);
    symlinkSync(shim, join(aliasDir, `containerd-shim-${name ?? ""}-${version ?? ""}`));
  }
  return aliasDir;
}

export interface Containerd {
  readonly dir: string;
  readonly root: string;
  readonly socket: string;
  readonly namespace: string;
  readonly baseImage: string;
  readonly pid: number;
  /** Runs `ctr -a <socket> -n k8s.io <args>` and returns stdout. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<string>;
  stop(): Promise<void>;
}

const live = new Set<string>();

/** Processes whose command line mentions `needle` (the containerd shims we started keep our socket path). */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "latin1").includes(needle)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

function mountsUnder(dir: string): string[] {
  const lines = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const points = lines
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, " "));
  return points.sort((a, b) => b.length - a.length);
}

function cleanupSync(dir: string, containerdPid: number | undefined): void {
  if (containerdPid !== undefined) {
    try {
      process.kill(containerdPid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const pid of pidsMentioning(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 3; i++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) break;
    for (const m of mounts) {
      try {
        execFileSync("umount", [m], { stdio: "ignore" });
      } catch {
        try {
          execFileSync("umount", ["-l", m], { stdio: "ignore" });
        } catch {
          // retried in the next round
        }
      }
    }
  }
  if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  live.delete(dir);
}

let exitHookInstalled = false;
function installExitHook(pids: Map<string, number>): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const dir of [...live]) cleanupSync(dir, pids.get(dir));
  });
}
const containerdPids = new Map<string, number>();

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface ContainerdOptions {
  /**
   * Prepares containerd's root directory (created empty) before containerd starts, e.g. mounts
   * another file system there; whatever is mounted under the test bed's directory is unmounted on stop.
   */
  readonly prepareRoot?: (root: string) => void;
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const dir = mkdtempSync(join(tmpdir(), "ctd-test-"));
  live.add(dir);
  installExitHook(containerdPids);
  const root = join(dir, "root");
  const socket = join(dir, "containerd.sock");
  writeFileSync(
    join(dir, "config.toml"),
    [
      "version = 2",
      `root = "${root}"`,
      `state = "${join(dir, "state")}"`,
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "[debug]",
      `  address = "${socket}.debug"`,
      "[metrics]",
      '  address = ""',
      "",
    ].join("\n"),
  );
  let child: ChildProcess | undefined;
  try {
    if (opts.prepareRoot !== undefined) {
      mkdirSync(root);
      opts.prepareRoot(root);
    }
    const { openSync } = await import("node:fs");
    const logFd = openSync(join(dir, "containerd.log"), "a");
    const aliasDir = shimAliases(dir);
    child = spawn(bin("containerd"), ["--config", join(dir, "config.toml")], { stdio: ["ignore", logFd, logFd], detached: false, env: childEnv(aliasDir) });
    const pid = child.pid;
    if (pid === undefined) throw new Error("containerd did not start");
    containerdPids.set(dir, pid);
    const ctr = async (args: string[], opts: { timeoutMs?: number } = {}): Promise<string> => {
      const r = await run(bin("ctr"), ["-a", socket, "-n", TEST_NAMESPACE, ...args], {
        env: childEnv(),
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
      });
      return r.stdout;
    };
    await waitFor(async () => existsSync(socket) && (await ctr(["version"], { timeoutMs: 2000 })).includes("Server"), STARTUP_BUDGET_MS, `containerd at ${socket}`);
    const image = await buildBaseImage(BASE_IMAGE);
    const tarPath = join(dir, "base-image.tar");
    writeFileSync(tarPath, image.tar);
    await ctr(["images", "import", "--snapshotter", "overlayfs", tarPath]);
    const cd: Containerd = {
      dir,
      root,
      socket,
      namespace: TEST_NAMESPACE,
      baseImage: image.name,
      pid,
      ctr,
      stop: async () => {
        // tasks first (their shims are separate processes), then containerd, then mounts and files
        try {
          const ids = (await ctr(["containers", "ls", "-q"], { timeoutMs: 10_000 })).split("\n").filter(Boolean);
          await Promise.all(ids.map((id) => removeContainer(cd, id).catch(() => undefined)));
        } catch {
          // containerd already down: the sync clean-up below kills what is left
        }
        const exited = new Promise<void>((resolve) => {
          if (child?.exitCode !== null) resolve();
          else child.once("exit", () => { resolve(); });
        });
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // gone
        }
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        cleanupSync(dir, pid);
        containerdPids.delete(dir);
      },
    };
    return cd;
  } catch (e) {
    cleanupSync(dir, child?.pid);
    throw e;
  }
}

export interface RunOptions {
  readonly image?: string;
  readonly id?: string;
  readonly command?: string[];
  readonly labels?: Record<string, string>;
  readonly snapshotter?: string;
  /** containerd runtime name (default runc); see FAKE_RUNTIMES. */
  readonly runtime?: string;
}

let seq = 0;

/** Runs a container with a pod's CRI labels (like kubelet through CRI would); returns its containerd id. */
export async function runContainer(cd: Containerd, pod: string, namespace: string, container: string, opts: RunOptions = {}): Promise<string> {
  const id = opts.id ?? `${pod}-${container}-${process.pid}-${++seq}`;
  const labels = {
    "io.kubernetes.pod.name": pod,
    "io.kubernetes.pod.namespace": namespace,
    "io.kubernetes.container.name": container,
    "io.cri-containerd.kind": "container",
    ...opts.labels,
  };
  const args = ["run", "-d", "--snapshotter", opts.snapshotter ?? "overlayfs"];
  if (opts.runtime !== undefined) args.push("--runtime", opts.runtime);
  for (const [k, v] of Object.entries(labels)) args.push("--label", `${k}=${v}`);
  args.push(opts.image ?? cd.baseImage, id, ...(opts.command ?? ["/bin/sleep", "100000"]));
  await cd.ctr(args);
  await waitFor(async () => (await taskStatus(cd, id)) === "RUNNING", CONTAINER_START_BUDGET_MS, `container ${id} to run`);
  return id;
}

/**
 * Labels a container with its pod's UID, as the kubelet's CRI does at creation; for tests that start the
 * container before the API server has assigned the pod a UID (the committer checks SNAPSHOT_POD_UID
 * against this label).
 */
export async function labelPodUid(cd: Containerd, id: string, podUid: string | undefined): Promise<void> {
  if (podUid === undefined || podUid === "") throw new Error(`no pod UID to label container ${id} with`);
  await cd.ctr(["containers", "label", id, `io.kubernetes.pod.uid=${podUid}`]);
}

let execSeq = 0;

/** Runs a shell script inside a running container; returns stdout. */
export async function exec(cd: Containerd, id: string, script: string): Promise<string> {
  return cd.ctr(["tasks", "exec", "--exec-id", `x${process.pid}-${++execSeq}`, id, "/bin/sh", "-c", script]);
}

/** RUNNING, PAUSED, STOPPED… (or undefined when the container has no task). */
export async function taskStatus(cd: Containerd, id: string): Promise<string | undefined> {
  const out = await cd.ctr(["tasks", "ls"]);
  for (const line of out.split("\n").slice(1)) {
    const [task, , status] = line.trim().split(/\s+/);
    if (task === id) return status;
  }
  return undefined;
}

/** Kills and deletes a container with its task and snapshot. */
export async function removeContainer(cd: Containerd, id: string): Promise<void> {
  await cd.ctr(["tasks", "resume", id]).catch(() => undefined);
  await cd.ctr(["tasks", "kill", "-s", "SIGKILL", id]).catch(() => undefined);
  await waitFor(async () => {
    const s = await taskStatus(cd, id);
    return s === undefined || s === "STOPPED";
  }, 10_000, `task ${id} to stop`).catch(() => undefined);
  await cd.ctr(["tasks", "delete", id]).catch(() => undefined);
  await cd.ctr(["containers", "delete", id]).catch(() => undefined);
}

/** The overlay upper directory of a container (from `ctr snapshots mounts`). */
export async function upperDir(cd: Containerd, id: string): Promise<string> {
  const info = JSON.parse(await cd.ctr(["containers", "info", id])) as { SnapshotKey: string };
  const out = await cd.ctr(["snapshots", "--snapshotter", "overlayfs", "mounts", "/mnt", info.SnapshotKey]);
  const m = /upperdir=([^,\s]+)/.exec(out);
  if (m?.[1] === undefined) throw new Error(`no upperdir in ${out}`);
  return m[1];
}
