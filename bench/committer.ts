// Committer benchmark: real containerd + runc + registry on loopback (the integration test bed,
// test/support/), the committer CLI as its own process under the memory limit its Job gets, against
// baselines measured in the same run:
//   - the floor: reading the changed bytes once (GNU tar of the upper directories), cold and warm;
//   - the usual way: containers paused for the whole containerd Diff-service commit (pause, Diff with
//     gzip, resume — what `nerdctl commit` and `docker commit` do);
//   - the bound: tar | gzip | push of the same bytes with the registry client.
// The freeze "as the sandbox feels it" is the longest stall of a heartbeat process (bench/heartbeat.ts)
// per container: a Node process on the host moved into the container's freezer cgroup, so pausing
// the container stalls it, writing to a tmpfs directory outside the captured filesystem.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createGzip } from "node:zlib";
import { ContainerdClient } from "../src/containerd/client.js";
import { findTargets, type TargetContainer } from "../src/committer/lookup.js";
import { RegistryClient } from "../src/registry/client.js";
import { missingComponents, which } from "../test/support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, upperDir, type Containerd } from "../test/support/containerd.js";
import { startRegistry, type TestRegistry } from "../test/support/registry.js";
import type { CommitterResults, DiffServiceRun, OursRun, SecondSnapshot, WorkloadRun } from "./committer-types.js";
import { BENCH_NICE, log, MiB, procMemory, REPO_ROOT } from "./util.js";

const NS = "bench";
/** COMMIT_JOB_MEMORY's default: the committer runs under this limit, like in its Job. */
const JOB_MEMORY_LIMIT = 512 * MiB;
const GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip";
const TAR_FLAGS = ["--format=posix", "--xattrs", "--xattrs-include=*", "--sort=name", "--numeric-owner", "-cf", "-", "."];

// ---- helpers ------------------------------------------------------------------------------------

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function sh(script: string): string {
  return execFileSync("sh", ["-c", script], { encoding: "utf8", maxBuffer: 64 * MiB });
}

/** Same priority for everything that takes part (ours, the baselines, containerd and its shims, the
 *  registry): on a machine shared with other work this keeps the comparison fair and the noise down. */
function renice(pids: (number | undefined)[]): boolean {
  if (process.getuid?.() !== 0 || which("renice") === undefined) return false;
  try {
    execFileSync("renice", ["-n", String(BENCH_NICE), "-p", ...pids.filter((p): p is number => p !== undefined).map(String)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

let canDropCaches: boolean | undefined;
/** Writes dirty pages back, then drops the page cache (needs root): the next read comes from disk. */
function dropCaches(): boolean {
  sh("sync");
  if (canDropCaches === false) return false;
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3");
    canDropCaches = true;
  } catch {
    canDropCaches = false;
  }
  return canDropCaches;
}

/** The project's sources transpiled to plain JS once per run (esbuild, no bundling): the committer
 *  runs as compiled JavaScript, like in its image, without tsx's start-up cost. */
function buildCommitter(dir: string): string {
  const out = join(dir, "dist");
  const files = sh(`cd ${JSON.stringify(REPO_ROOT)} && find src -name '*.ts'`).trim().split("\n");
  execFileSync(join(REPO_ROOT, "node_modules", ".bin", "esbuild"), [...files, `--outdir=${out}`, "--format=esm", "--platform=node", "--log-level=warning"], { cwd: REPO_ROOT });
  return join(out, "committer", "cli.js");
}

/** bench/heartbeat.ts transpiled to plain JS (esbuild), so that no loader runs in the heartbeat. */
function buildHeartbeat(dir: string): string {
  const out = join(dir, "heartbeat.js");
  execFileSync(join(REPO_ROOT, "node_modules", ".bin", "esbuild"), [join(REPO_ROOT, "bench", "heartbeat.ts"), `--outfile=${out}`, "--format=esm", "--platform=node", "--log-level=warning"], { cwd: REPO_ROOT });
  return out;
}

/** The `cgroup.procs` of the cgroup that freezes a process when its container is paused: the v1
 *  freezer controller's, else (v2) the unified hierarchy's. */
function freezerProcs(pid: number): string {
  const lines = readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n");
  const v1 = lines.map((l) => l.split(":")).find((f) => f[1]?.split(",").includes("freezer") === true)?.[2];
  if (v1 !== undefined && existsSync("/sys/fs/cgroup/freezer/cgroup.procs")) return join("/sys/fs/cgroup/freezer", v1, "cgroup.procs");
  const v2 = lines.find((l) => l.startsWith("0::"))?.slice(3);
  if (v2 !== undefined && existsSync("/sys/fs/cgroup/cgroup.controllers")) return join("/sys/fs/cgroup", v2, "cgroup.procs");
  throw new Error(`no freezer cgroup for process ${pid}: ${lines.join(" ")}`);
}

/** Starts a heartbeat on the host and moves it into the cgroup of the container's task. */
async function startHeartbeat(cd: Containerd, hb: string, id: string, logPath: string): Promise<ChildProcess> {
  const info = (await cd.ctr(["tasks", "ls"])).split("\n").map((l) => l.trim().split(/\s+/)).find((f) => f[0] === id);
  const taskPid = Number(info?.[1]);
  if (!Number.isInteger(taskPid) || taskPid <= 0) throw new Error(`no task PID for container ${id}`);
  const procs = freezerProcs(taskPid);
  const child = spawn(process.execPath, [hb, logPath, "2"], { stdio: ["ignore", "ignore", "inherit"] });
  if (child.pid === undefined) throw new Error(`heartbeat for ${id} did not start`);
  writeFileSync(procs, String(child.pid));
  const end = Date.now() + 10_000;
  while (!existsSync(logPath) || !readFileSync(logPath, "utf8").startsWith("start ")) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`heartbeat for ${id} did not start`);
    await sleep(10);
  }
  return child;
}

async function stopHeartbeat(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGKILL");
  await Promise.race([exited, sleep(5000)]);
}

/** A cgroup (v1 memory controller) with the Job's memory limit, or undefined where none can be made. */
function memoryCgroup(): string | undefined {
  const root = "/sys/fs/cgroup/memory";
  if (!existsSync(join(root, "cgroup.procs"))) return undefined;
  const dir = join(root, `bench-committer-${process.pid}`);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "memory.limit_in_bytes"), String(JOB_MEMORY_LIMIT));
    return dir;
  } catch {
    return undefined;
  }
}

/** How many processes the cgroup's OOM killer has killed so far (`oom_kill` in memory.oom_control). */
function oomKills(cgroup: string | undefined): number {
  if (cgroup === undefined) return 0;
  try {
    return Number(/oom_kill (\d+)/.exec(readFileSync(join(cgroup, "memory.oom_control"), "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** A loopback HTTP proxy in front of the registry that counts request-body bytes (uploads). */
interface CountingProxy {
  readonly host: string;
  uploaded: number;
  requests: number;
  close(): Promise<void>;
}

async function countingProxy(target: string): Promise<CountingProxy> {
  const [thost, tport] = target.split(":");
  const state = { uploaded: 0, requests: 0 };
  const server: Server = createServer((req, res) => {
    state.requests++;
    const up = httpRequest(
      { host: thost, port: Number(tport), method: req.method, path: req.url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => {
      res.destroy();
    });
    req.on("data", (c: Buffer) => {
      state.uploaded += c.length;
    });
    req.pipe(up);
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    get uploaded() {
      return state.uploaded;
    },
    set uploaded(v: number) {
      state.uploaded = v;
    },
    get requests() {
      return state.requests;
    },
    set requests(v: number) {
      state.requests = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => {
          r();
        });
      }),
  };
}

// ---- the sandbox pod ----------------------------------------------------------------------------

interface BenchContainer {
  readonly name: string;
  readonly id: string;
  readonly hbLog: string;
  readonly heartbeat: ChildProcess;
}

interface Pod {
  readonly name: string;
  readonly containers: BenchContainer[];
}

let seq = 0;

async function startPod(cd: Containerd, hb: string, hbRoot: string, pod: string, count: number, image: string): Promise<Pod> {
  const containers: BenchContainer[] = [];
  for (let i = 0; i < count; i++) {
    const name = `c${i}`;
    // unique on the host: runc's state directory (/run/containerd/runc/<namespace>) is shared by every containerd here
    const id = `${pod}-${name}-${process.pid}-${++seq}`;
    const dir = join(hbRoot, id);
    mkdirSync(dir, { recursive: true });
    const labels = {
      "io.kubernetes.pod.name": pod,
      "io.kubernetes.pod.namespace": NS,
      "io.kubernetes.container.name": name,
      "io.cri-containerd.kind": "container",
    };
    const args = ["run", "-d", "--snapshotter", "overlayfs"];
    for (const [k, v] of Object.entries(labels)) args.push("--label", `${k}=${v}`);
    args.push(image, id, "/bin/sleep", "100000");
    await cd.ctr(args);
    const end = Date.now() + 10_000;
    while ((await taskStatus(cd, id)) !== "RUNNING") {
      if (Date.now() > end) throw new Error(`container ${id} did not start`);
      await sleep(50);
    }
    const hbLog = join(dir, "log");
    try {
      containers.push({ name, id, hbLog, heartbeat: await startHeartbeat(cd, hb, id, hbLog) });
    } catch (e) {
      await removeContainer(cd, id);
      throw e;
    }
  }
  return { name: pod, containers };
}

async function stopPod(cd: Containerd, pod: Pod): Promise<void> {
  for (const c of pod.containers) {
    // thawed first: a frozen heartbeat cannot exit, and runc cannot remove a cgroup with it inside
    await cd.ctr(["tasks", "resume", c.id]).catch(() => undefined);
    await stopHeartbeat(c.heartbeat);
    await removeContainer(cd, c.id);
  }
}

/** Longest heartbeat stall (ms) overlapping [fromMs, toMs] (wall clock), over the pod's containers. */
function longestStall(pod: Pod, fromMs: number, toMs: number): number {
  let worst = 0;
  for (const c of pod.containers) {
    let text = "";
    try {
      text = readFileSync(c.hbLog, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      const [a, b] = line.split(" ");
      if (a === undefined || b === undefined || a === "start") continue;
      const start = Number(a) / 1e6;
      const end = Number(b) / 1e6;
      if (end >= fromMs && start <= toMs) worst = Math.max(worst, end - start);
    }
  }
  return worst;
}

// ---- workloads ----------------------------------------------------------------------------------

interface Workload {
  readonly id: string;
  readonly title: string;
  /** Shell script run in each container (busybox sh) for a pod of `containers` containers. */
  script(scale: number, containers: number): string;
  /** Needs the base image with many files (for deletions). */
  readonly manyFilesBase?: boolean;
  /** Host-side preparation through the container's root filesystem (faster than a shell loop for many entries). */
  prepare?(rootfs: string, scale: number, containers: number): void;
  /** Started in each container before the commit and left running through it (busybox sh, detached). */
  readonly background?: string;
  /** Checks the pushed snapshot's contents (run in a container started from it); returns a one-line verdict. */
  verify?(cd: Containerd, id: string): Promise<string>;
  /** Committed under the committer's default watchdog (SNAPSHOT_MAX_FREEZE_SECONDS unset), not the bench's 300 s. */
  readonly defaultWatchdog?: boolean;
  /** One container only (a size that matters per container). */
  readonly single?: boolean;
  /** The Diff-service baseline is not run (it would take longer than the rest of the bench). */
  readonly noDiffService?: boolean;
}

/** A node_modules-like tree: packages of a directory, a lib/ directory and 8 small files (100 B – 3 KiB). */
function nodeModulesTree(rootfs: string, entries: number): void {
  const base = join(rootfs, "work", "node_modules");
  let n = 0;
  let seed = 1;
  const rnd = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed;
  };
  for (let p = 0; n < entries; p++) {
    const pkg = join(base, `pkg-${p}`);
    mkdirSync(join(pkg, "lib"), { recursive: true });
    n += 2;
    for (const f of ["package.json", "index.js", "README.md", "LICENSE", "lib/a.js", "lib/b.js", "lib/c.js", "lib/d.d.ts"]) {
      if (n >= entries) break;
      writeFileSync(join(pkg, f), `// ${p} ${f}\n${"x".repeat(100 + (rnd() % 2900))}\n`);
      n++;
    }
  }
}

/** A node_modules-like tree of `entries` committed under the default watchdog, one container. */
function watchdogTree(id: string, entries: number): Workload {
  return {
    id,
    title: `${entries.toLocaleString("en-US")} small entries (node_modules-like), under the default 60 s watchdog`,
    script: () => "true",
    prepare: (rootfs, scale, k) => {
      nodeModulesTree(rootfs, Math.round((entries * scale) / k));
    },
    defaultWatchdog: true,
    single: true,
  };
}

/** The busy sandbox's writers: a log line every 10 ms, a state file rewritten every 100 ms. */
const BUSY_WRITERS =
  "mkdir -p /work; " +
  "setsid sh -c 'i=0; while true; do echo \"tick $i\" >> /work/log; i=$((i+1)); usleep 10000; done' </dev/null >/dev/null 2>&1 & " +
  "setsid sh -c 'i=0; while true; do echo \"version $i $(date +%s)\" > /work/state; i=$((i+1)); usleep 100000; done' </dev/null >/dev/null 2>&1 &";

const WORKLOADS: Workload[] = [
  {
    id: "a",
    title: "1,000 small files (≈2 KiB text each, 10 directories)",
    script: (_s, k) => {
      const per = Math.round(1000 / k);
      return `set -e; for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p /work/src/d$d; done; i=0; while [ $i -lt ${per} ]; do printf 'line %04d of a small source file in the sandbox workspace\\n%01980d\\n' $i $i > /work/src/d$((i % 10))/file$i.txt; i=$((i+1)); done`;
    },
  },
  {
    id: "b",
    title: "256 MiB in 2,000 files (128 KiB each, random contents)",
    script: (s, k) => {
      const per = Math.max(1, Math.round((2000 * s) / k));
      return `set -e; mkdir -p /work/data; i=0; while [ $i -lt ${per} ]; do dd if=/dev/urandom of=/work/data/f$i bs=128k count=1 2>/dev/null; i=$((i+1)); done`;
    },
  },
  {
    id: "c",
    title: "1 GiB in 4 large files (random contents)",
    script: (s, k) => {
      const files = k === 1 ? 4 : 2;
      const mib = Math.max(1, Math.round((1024 * s) / k / files));
      let out = "set -e; mkdir -p /work/big;";
      for (let i = 0; i < files; i++) out += ` dd if=/dev/urandom of=/work/big/blob${i} bs=1M count=${mib} 2>/dev/null;`;
      return out;
    },
  },
  {
    id: "d",
    title: "2,500 deletions of base-image files + a replaced directory (1,000 files → 20 new)",
    manyFilesBase: true,
    script: () =>
      "set -e; for d in 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24; do rm -f /data/many/d$d/f*; done; rm -rf /data/tree; mkdir /data/tree; i=0; while [ $i -lt 20 ]; do echo new $i > /data/tree/n$i; i=$((i+1)); done",
  },
  {
    id: "e",
    title: "200,000 small entries (node_modules-like: 20,000 packages, 100 B – 3 KiB files)",
    script: () => "true",
    prepare: (rootfs, scale, k) => {
      nodeModulesTree(rootfs, Math.round((200_000 * scale) / k));
    },
  },
  watchdogTree("g", 500_000),
  // ~4 minutes per 500,000 entries for the Diff service in (g): it would double the bench for a row (g) already shows
  { ...watchdogTree("h", 1_000_000), noDiffService: true },
  {
    id: "f",
    title: "a sandbox that keeps writing during the commit (log line every 10 ms, file rewritten every 100 ms) + 1,000 small files",
    script: (_s, k) => {
      const per = Math.round(1000 / k);
      return `set -e; mkdir -p /work/src; i=0; while [ $i -lt ${per} ]; do printf 'line %04d\\n%01980d\\n' $i $i > /work/src/file$i.txt; i=$((i+1)); done`;
    },
    background: BUSY_WRITERS,
    verify: async (cd, id) => {
      // the snapshot is one point in time: the log's lines are whole and consecutive, the state one line
      const log = (await exec(cd, id, "cat /work/log")).split("\n").filter((l) => l !== "");
      const state = await exec(cd, id, "cat /work/state");
      const consecutive = log.every((l, i) => l === `tick ${i}`);
      const stateOk = /^version \d+ \d+\n$/.test(state);
      return `${consecutive && stateOk ? "content proved" : "**content WRONG**"}: log ${log.length} whole consecutive lines (tick 0 … tick ${log.length - 1}): ${consecutive ? "yes" : "no"}; state ${JSON.stringify(state.trim())}: ${stateOk ? "one whole version" : "torn"}`;
    },
  },
];

/** A base image with 5,000 files in /data/many/d0..d49 and 1,000 in /data/tree, made with our committer. */
const MANY_FILES_SCRIPT =
  "set -e; d=0; while [ $d -lt 50 ]; do mkdir -p /data/many/d$d; f=0; while [ $f -lt 100 ]; do echo file $d $f > /data/many/d$d/f$f; f=$((f+1)); done; d=$((d+1)); done; mkdir -p /data/tree; f=0; while [ $f -lt 1000 ]; do echo tree $f > /data/tree/t$f; f=$((f+1)); done";

// ---- measurements -------------------------------------------------------------------------------

interface Env {
  readonly cd: Containerd;
  readonly reg: TestRegistry;
  readonly proxy: CountingProxy;
  readonly client: ContainerdClient;
  readonly cli: string;
  readonly hb: string;
  readonly hbRoot: string;
  readonly work: string;
  readonly cgroup: string | undefined;
}

/** Bytes of a tar stream of a directory read with GNU tar (the committer's flags), and the time. */
async function readOnce(dirs: string[]): Promise<{ ms: number; bytes: number }> {
  const t0 = performance.now();
  let bytes = 0;
  for (const d of dirs) {
    const child = spawn("tar", TAR_FLAGS, { cwd: d, stdio: ["ignore", "pipe", "inherit"] });
    const closed = once(child, "close") as Promise<[number | null]>;
    for await (const c of child.stdout) bytes += (c as Buffer).length;
    const [code] = await closed;
    if (code !== 0 && code !== 1) throw new Error(`tar of ${d} exited with ${code ?? "?"}`);
  }
  return { ms: performance.now() - t0, bytes };
}

function changedStats(dirs: string[]): { bytes: number; entries: number } {
  let bytes = 0;
  let entries = 0;
  for (const d of dirs) {
    const out = sh(`find ${JSON.stringify(d)} -mindepth 1 -printf '%y %s\\n'`);
    for (const line of out.split("\n")) {
      if (line === "") continue;
      entries++;
      const [type, size] = line.split(" ");
      if (type === "f") bytes += Number(size);
    }
  }
  return { bytes, entries };
}

async function runOurs(env: Env, pod: Pod, tag: string, opts: { defaultWatchdog?: boolean } = {}): Promise<OursRun> {
  const dir = mkdtempSync(join(env.work, "ours-"));
  const scratch = join(dir, "scratch");
  mkdirSync(scratch);
  const resultPath = join(dir, "result.json");
  const childEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    CONTAINERD_SOCKET: env.cd.socket,
    CONTAINERD_ROOT: env.cd.root,
    CONTAINERD_NAMESPACE: env.cd.namespace,
    SNAPSHOT_REGISTRY_INSECURE: "true",
    SNAPSHOT_COMPRESSION: "gzip",
    SNAPSHOT_SCRATCH_DIR: scratch,
    SNAPSHOT_SCRATCH_LIMIT_BYTES: "20Gi",
    ...(opts.defaultWatchdog === true ? {} : { SNAPSHOT_MAX_FREEZE_SECONDS: "300" }),
    SNAPSHOT_RESULT_PATH: resultPath,
    SNAPSHOT_UID: `bench-${tag}`,
    SNAPSHOT_NAME: `bench-${tag}`,
    SNAPSHOT_NAMESPACE: NS,
  };
  const targets = pod.containers.map((c) => `${c.name}:${env.proxy.host}/bench/${pod.name}-${c.name}:${tag}`);
  const flags = process.env.BENCH_COMMITTER_NODE_FLAGS?.split(" ").filter(Boolean) ?? [];
  const node = [process.execPath, ...flags, env.cli, pod.name, NS, ...targets];
  const argv = env.cgroup !== undefined ? ["sh", "-c", `echo $$ > ${env.cgroup}/cgroup.procs && exec "$@"`, "sh", ...node] : node;
  const oomKillsBefore = oomKills(env.cgroup);
  const t0 = performance.now();
  const w0 = Date.now();
  const child = spawn(argv[0] ?? "sh", argv.slice(1), { env: childEnv, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
    if (process.env.BENCH_COMMITTER_LOG === "1") {
      for (const l of b.toString().split("\n")) if (l !== "") log(`  +${(performance.now() - t0).toFixed(0)} ms ${l.slice(0, 200)}`);
    }
  });
  let peak = 0;
  const poll = setInterval(() => {
    if (child.pid !== undefined) peak = Math.max(peak, procMemory(child.pid, "VmHWM") ?? 0);
  }, 25);
  const [code, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
  clearInterval(poll);
  const endToEndMs = performance.now() - t0;
  const w1 = Date.now();
  await sleep(30); // the heartbeats' last lines
  let result: { freezeMillis?: number; containers?: { sizeBytes: number }[]; error?: string } = {};
  try {
    result = JSON.parse(readFileSync(resultPath, "utf8")) as typeof result;
  } catch {
    // reported below
  }
  rmSync(dir, { recursive: true, force: true });
  if (code !== 0 || result.freezeMillis === undefined) {
    const kills = oomKills(env.cgroup);
    const how = code !== null ? `exit ${code}` : `killed by ${signal ?? "a signal"}${kills > oomKillsBefore ? " — the cgroup's OOM killer (memory limit)" : ""}`;
    const last = stderr.trim().split("\n").slice(-2).join(" / ");
    const why = `committer ${how} at peak RSS ${(peak / MiB).toFixed(0)} MiB; last log lines: ${result.error ?? last}`.slice(0, 600);
    log(why);
    // the freeze itself completed when the capture line was logged: keep what the sandbox felt
    const frozen = /frozen for (\d+) ms/.exec(stderr);
    return {
      feltFreezeMs: frozen !== null ? longestStall(pod, w0, w1) : Number.NaN,
      reportedFreezeMs: frozen?.[1] !== undefined ? Number(frozen[1]) : Number.NaN,
      endToEndMs,
      peakRssBytes: peak,
      layerBytes: Number.NaN,
      exitCode: code,
      error: why,
    };
  }
  return {
    feltFreezeMs: longestStall(pod, w0, w1),
    reportedFreezeMs: result.freezeMillis,
    endToEndMs,
    peakRssBytes: peak,
    layerBytes: (result.containers ?? []).reduce((n, c) => n + c.sizeBytes, 0),
    exitCode: code,
  };
}

/** The usual way: pause every container, Diff service (with gzip) per container, resume. */
async function runDiffService(env: Env, pod: Pod, tag: string): Promise<DiffServiceRun> {
  const { client } = env;
  const targets: TargetContainer[] = await findTargets(client, pod.name, NS, pod.containers.map((c) => c.name));
  const lease = `bench-diff-${tag}`;
  await client.createLease(lease, { "containerd.io/gc.expire": new Date(Date.now() + 3_600_000).toISOString().replace(/\.\d+Z$/, "Z") });
  const views: { snapshotter: string; key: string }[] = [];
  let layerBytes = 0;
  const w0 = Date.now();
  const t0 = performance.now();
  let pausedMs = 0;
  try {
    await Promise.all(targets.map((t) => client.pause(t.id)));
    try {
      for (const [i, t] of targets.entries()) {
        // as nerdctl's commit does it: a view of the parent, then Diff(parent view, container snapshot)
        const info = await client.statSnapshot(t.snapshotter, t.snapshotKey);
        const key = `${lease}-view-${i}`;
        const left = await client.leased(lease).viewSnapshot(t.snapshotter, key, info.parent);
        views.push({ snapshotter: t.snapshotter, key });
        const right = await client.snapshotMounts(t.snapshotter, t.snapshotKey);
        const desc = await client.leased(lease).diff(left, right, GZIP_MEDIA_TYPE, `${lease}-${i}`, 600_000);
        layerBytes += desc.size;
      }
    } finally {
      await Promise.all(targets.map((t) => client.resume(t.id)));
      pausedMs = performance.now() - t0;
    }
  } finally {
    for (const v of views) await client.removeSnapshot(v.snapshotter, v.key).catch(() => undefined);
    await client.deleteLease(lease).catch(() => undefined);
  }
  const w1 = Date.now();
  await sleep(30);
  return { feltFreezeMs: longestStall(pod, w0, w1), pausedMs, layerBytes };
}

/** The bound: tar | gzip (same zlib level as the committer) → file + sha256 → push, per container. */
async function runBound(env: Env, uppers: string[], tag: string): Promise<{ ms: number; bytes: number }> {
  const reg = await RegistryClient.create({ registry: env.proxy.host, insecure: true });
  const t0 = performance.now();
  let bytes = 0;
  for (const [i, d] of uppers.entries()) {
    const path = join(env.work, `bound-${tag}-${i}.tar.gz`);
    const tar = spawn("tar", TAR_FLAGS, { cwd: d, stdio: ["ignore", "pipe", "inherit"] });
    const gz = createGzip({ level: 6 });
    const hash = createHash("sha256");
    const out = createWriteStream(path);
    gz.on("data", (c: Buffer) => {
      hash.update(c);
      bytes += c.length;
    });
    tar.stdout.pipe(gz).pipe(out);
    await once(out, "finish");
    await reg.pushBlob(`bench/bound-${tag}`, { path }, { digest: `sha256:${hash.digest("hex")}` });
    rmSync(path, { force: true });
  }
  return { ms: performance.now() - t0, bytes };
}

async function measureWorkload(env: Env, w: Workload, k: number, scale: number, image: string, manyImage: string): Promise<WorkloadRun> {
  const podName = `w${w.id}-${k}c`;
  const pod = await startPod(env.cd, env.hb, env.hbRoot, podName, k, w.manyFilesBase === true ? manyImage : image);
  try {
    await Promise.all(pod.containers.map((c) => exec(env.cd, c.id, w.script(scale, k))));
    if (w.prepare !== undefined) {
      for (const c of pod.containers) w.prepare(join(env.cd.dir, "state", "io.containerd.runtime.v2.task", env.cd.namespace, c.id, "rootfs"), scale, k);
    }
    if (w.background !== undefined) {
      for (const c of pod.containers) await exec(env.cd, c.id, w.background);
      await sleep(300);
    }
    const uppers = await Promise.all(pod.containers.map((c) => upperDir(env.cd, c.id)));
    const stats = changedStats(uppers);
    dropCaches();
    const cold = await readOnce(uppers);
    const warm = await readOnce(uppers);
    // scheduling noise: the longest stall in a quiet second with nothing frozen
    const q0 = Date.now();
    await sleep(scale < 1 ? 500 : 1000);
    const idleStallMs = longestStall(pod, q0, Date.now());
    dropCaches();
    const ours = await runOurs(env, pod, `snap-${w.id}${k}`, { defaultWatchdog: w.defaultWatchdog === true });
    dropCaches();
    const diffService = w.noDiffService === true ? undefined : await runDiffService(env, pod, `${w.id}${k}`);
    dropCaches();
    const bound = await runBound(env, uppers, `${w.id}${k}`);
    let verified: string | undefined;
    if (w.verify !== undefined && ours.error === undefined) {
      const image = `${env.proxy.host}/bench/${pod.name}-c0:snap-${w.id}${k}`;
      await env.cd.ctr(["images", "pull", "--plain-http", image], { timeoutMs: 300_000 });
      const check = await runContainer(env.cd, `${pod.name}-check`, NS, "c0", { image });
      try {
        verified = await w.verify(env.cd, check);
      } finally {
        await removeContainer(env.cd, check);
      }
      log(`committer ${w.id} ×${k}: ${verified}`);
    }
    const run: WorkloadRun = {
      id: w.id,
      title: w.title,
      containers: k,
      changedBytes: stats.bytes,
      changedEntries: stats.entries,
      tarBytes: cold.bytes,
      coldReadMs: cold.ms,
      warmReadMs: warm.ms,
      idleStallMs,
      ours,
      ...(diffService !== undefined ? { diffService } : {}),
      boundMs: bound.ms,
      boundBlobBytes: bound.bytes,
      ...(verified !== undefined ? { verified } : {}),
    };
    log(
      `committer ${w.id} ×${k}: ${(stats.bytes / MiB).toFixed(1)} MiB; freeze felt ${ours.feltFreezeMs.toFixed(0)} ms (reported ${ours.reportedFreezeMs}) vs cold read ${cold.ms.toFixed(0)} / warm ${warm.ms.toFixed(0)} ms; Diff-service freeze ${diffService === undefined ? "not run" : `${diffService.feltFreezeMs.toFixed(0)} ms`}; e2e ${ours.endToEndMs.toFixed(0)} vs bound ${bound.ms.toFixed(0)} ms; peak RSS ${(ours.peakRssBytes / MiB).toFixed(0)} MiB`,
    );
    return run;
  } finally {
    await stopPod(env.cd, pod);
  }
}

/** A sandbox resumed from its snapshot and changed again: what does its next snapshot upload? */
async function measureSecond(env: Env, scale: number, image: string): Promise<SecondSnapshot> {
  const first = await startPod(env.cd, env.hb, env.hbRoot, "resume-src", 1, image);
  const firstRef = `${env.proxy.host}/bench/resume-src-c0:snap-1`;
  try {
    await exec(env.cd, first.containers[0]?.id ?? "", "set -e; mkdir -p /work; i=0; while [ $i -lt 40 ]; do dd if=/dev/urandom of=/work/old$i bs=64k count=4 2>/dev/null; i=$((i+1)); done");
    await runOurs(env, first, "snap-1");
  } finally {
    await stopPod(env.cd, first);
  }
  await env.cd.ctr(["images", "pull", "--plain-http", firstRef], { timeoutMs: 300_000 });
  const resumed = await startPod(env.cd, env.hb, env.hbRoot, "resume-src", 1, firstRef);
  try {
    const files = Math.max(16, Math.round(64 * scale));
    await exec(env.cd, resumed.containers[0]?.id ?? "", `set -e; i=0; while [ $i -lt ${files} ]; do dd if=/dev/urandom of=/work/new$i bs=128k count=1 2>/dev/null; i=$((i+1)); done; echo changed >> /work/old3`);
    const upper = await upperDir(env.cd, resumed.containers[0]?.id ?? "");
    const changed = changedStats([upper]);
    env.proxy.uploaded = 0;
    env.proxy.requests = 0;
    const r = await runOurs(env, resumed, "snap-2");
    const uploadedBytes = env.proxy.uploaded;
    const overheadBytes = uploadedBytes - r.layerBytes;
    return {
      changedBytes: changed.bytes,
      newLayerBytes: r.layerBytes,
      uploadedBytes,
      requests: env.proxy.requests,
      overheadBytes,
      overheadPct: (100 * overheadBytes) / r.layerBytes,
    };
  } finally {
    await stopPod(env.cd, resumed);
  }
}

export async function benchCommitter(opts: { quick: boolean }): Promise<CommitterResults> {
  const missing = missingComponents(["containerd", "runc", "ctr", "tar", "docker-registry"]);
  if (missing !== undefined) throw new Error(`committer benchmark: ${missing}`);
  const scale = opts.quick ? 1 / 16 : 1;
  const before = loadavg()[0] ?? Number.NaN;
  const work = mkdtempSync(join(REPO_ROOT, ".bench-tmp", "committer-"));
  const hbRoot = mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "bench-hb-"));
  const cli = buildCommitter(work);
  const hb = buildHeartbeat(work);
  const cgroup = memoryCgroup();
  const [cd, reg] = await Promise.all([startContainerd(), startRegistry({ logLevel: "error" })]);
  const proxy = await countingProxy(reg.host);
  const client = new ContainerdClient({ socket: cd.socket, namespace: cd.namespace });
  // containerd first: the shims it starts from now on (and the runc they run) inherit its priority
  const reniced = renice([process.pid, cd.pid, reg.pid]);
  const env: Env = { cd, reg, proxy, client, cli, hb, hbRoot, work, cgroup };
  try {
    log(`committer: containerd ${cd.socket}, registry ${reg.host} (counting proxy ${proxy.host}), memory limit ${cgroup !== undefined ? `${JOB_MEMORY_LIMIT / MiB} MiB (cgroup)` : "none (no cgroup v1 memory controller)"}`);
    // Node's start-up (the committer's usage error path), to read end-to-end times against
    const s0 = performance.now();
    try {
      execFileSync(process.execPath, [cli], { stdio: "ignore", env: { PATH: process.env.PATH ?? "" } });
    } catch {
      // exit code 2 (usage) is expected
    }
    const nodeStartupMs = performance.now() - s0;

    // the base image with many files for the deletion workload, made with our committer
    const seedPod = await startPod(cd, hb, hbRoot, "seed", 1, cd.baseImage);
    const manyImage = `${proxy.host}/bench/seed-c0:many`;
    try {
      await exec(cd, seedPod.containers[0]?.id ?? "", MANY_FILES_SCRIPT);
      await runOurs(env, seedPod, "many");
    } finally {
      await stopPod(cd, seedPod);
    }
    await cd.ctr(["images", "pull", "--plain-http", manyImage], { timeoutMs: 300_000 });

    const runs: WorkloadRun[] = [];
    // quick: every workload with one container, and the 256 MiB one with three as well
    const only = process.env.BENCH_WORKLOADS?.split(",") ?? (opts.quick ? ["a1", "b1", "c1", "d1", "e1", "g1", "h1", "f1", "b3"] : undefined);
    for (const k of [1, 3]) {
      for (const w of WORKLOADS) {
        if (k > 1 && w.single === true) continue;
        if (only === undefined || only.includes(w.id) || only.includes(`${w.id}${k}`)) runs.push(await measureWorkload(env, w, k, scale, cd.baseImage, manyImage));
      }
    }
    const second = await measureSecond(env, scale, cd.baseImage);
    log(`committer: second snapshot uploaded ${second.uploadedBytes} bytes for a ${second.newLayerBytes}-byte new layer (+${second.overheadPct.toFixed(2)} %)`);
    return {
      quick: opts.quick,
      scale,
      memoryLimitBytes: cgroup !== undefined ? JOB_MEMORY_LIMIT : undefined,
      cachesDropped: canDropCaches === true,
      compression: "gzip",
      nodeStartupMs,
      runs,
      second,
      nerdctl:
        which("nerdctl") !== undefined
          ? "nerdctl is installed but not wired into this benchmark yet"
          : "not measured: the Go module proxy reachable here answers 403 for github.com/containerd/nerdctl and github.com/containerd/nerdctl/v2 (no version list, no @latest), so nerdctl could not be built; the Diff-service baseline is what `nerdctl commit` does (pause, Diff, resume)",
      loadavg: { before, after: loadavg()[0] ?? Number.NaN },
      reniced,
    };
  } finally {
    client.close();
    await proxy.close();
    await cd.stop();
    await reg.close();
    if (cgroup !== undefined) {
      try {
        rmdirSync(cgroup);
      } catch {
        // a process is still in it (cannot be: every committer has exited); left for the operator
      }
    }
    rmSync(hbRoot, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
}
