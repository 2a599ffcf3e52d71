// The host side of the test cluster's node: a lock (one node per machine), a snapshot of the host
// settings the kubelet changes, the CNI bridge, containerd with its CRI plugin, and the pause image.
// cluster.ts starts the kubelet and kube-scheduler on top of it. Everything it changes is undone by
// teardownNodeHost(), which also runs synchronously when the test process exits, and on the next
// start when a previous run died without it (the snapshot is kept in the lock directory).
//
// Where things live, and why:
//   - containerd's socket and root are the product's defaults (/run/containerd/containerd.sock,
//     /var/lib/containerd), so the test overlay installs the product with its default settings.
//     Only those two entries are ours; /run/containerd itself is shared (other containerd instances'
//     runc shims keep state under /run/containerd/runc), so it is never removed.
//   - containerd's state, runc's root, CNI files and the kubelet's root are under NODE_DIR and
//     NODE_RUN_DIR, named for this project.
//   - pods run in cgroups under /ssc-node (kubelet cgroupRoot), on the bridge ssc0 (10.213.0.0/24),
//     isGateway false and no routes: a pod reaches the bridge address (registry, hook server) and other
//     pods, nothing beyond this machine, and ip_forward stays off.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tar from "tar-stream";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";

export const NODE_NAME = "ssc-node";
export const BRIDGE = "ssc0";
export const BRIDGE_IP = "10.213.0.1";
export const POD_SUBNET = "10.213.0.0/24";
export const CONTAINERD_SOCKET = "/run/containerd/containerd.sock";
export const CONTAINERD_ROOT = "/var/lib/containerd";
export const NODE_DIR = "/var/lib/ssc-node";
export const NODE_RUN_DIR = "/run/ssc-node";
export const CGROUP_ROOT = "/ssc-node";
export const PAUSE_IMAGE = "localhost/ssc/pause:1";
/** The test registry: plain HTTP on the bridge address, so pods (commit Jobs) and the kubelet reach it. */
export const REGISTRY_HOST = `${BRIDGE_IP}:5000`;
const LOCK = join(NODE_RUN_DIR, "lock");
const HOST_STATE = join(NODE_RUN_DIR, "host-state.json");
const PAUSE_SRC = fileURLToPath(new URL("../env/node/pause.c", import.meta.url));
const CGROUP_FS = "/sys/fs/cgroup";
/** Host settings the kubelet changes (it sets them to what it expects at start). */
const SYSCTLS = ["vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward"];
const IPT_TABLES = ["filter", "nat", "mangle"];

interface HostState {
  pid: number;
  sysctls: Record<string, string>;
  iptables: Record<string, string[]>;
}

export interface NodeHost {
  /** containerd's CRI socket for the kubelet. */
  socket: string;
  /** The node's containerd log. */
  containerdLog: string;
  /** Runs ctr against the node's containerd (namespace k8s.io). */
  ctr(args: string[], timeoutMs?: number): string;
  /** Imports an OCI archive (docker-archive or oci-archive tar) into the node's image store. */
  importImage(tarPath: string): void;
  /** Everything is undone; idempotent. */
  stop(): Promise<void>;
}

function sh(cmd: string, args: string[], opts: { check?: boolean; timeoutMs?: number; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: opts.timeoutMs ?? 60_000, input: opts.input });
  if (opts.check !== false && r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${String(r.status)}): ${r.stderr}${r.error ? r.error.message : ""}`);
  }
  return r.stdout;
}

/** Whether process `pid` still exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readSysctl(name: string): string {
  return readFileSync(`/proc/sys/${name.replaceAll(".", "/")}`, "utf8").trim();
}

function writeSysctl(name: string, value: string): void {
  try {
    writeFileSync(`/proc/sys/${name.replaceAll(".", "/")}`, value);
  } catch {
    // reported by the caller's comparison
  }
}

function iptablesRules(bin: string, table: string): string[] {
  const r = spawnSync(bin, ["-w", "5", "-t", table, "-S"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.split("\n").filter(Boolean) : [];
}

function snapshotHost(): HostState {
  const sysctls: Record<string, string> = {};
  for (const s of SYSCTLS) sysctls[s] = readSysctl(s);
  const iptables: Record<string, string[]> = {};
  for (const bin of ["iptables", "ip6tables"]) for (const t of IPT_TABLES) iptables[`${bin} ${t}`] = iptablesRules(bin, t);
  return { pid: process.pid, sysctls, iptables };
}

/** Removes the iptables rules and chains added since the snapshot (the kubelet's KUBE-* canaries). */
function restoreIptables(before: Record<string, string[]>): void {
  for (const [key, rules] of Object.entries(before)) {
    const [bin = "iptables", table = "filter"] = key.split(" ");
    const had = new Set(rules);
    const now = iptablesRules(bin, table);
    for (const rule of now.filter((r) => r.startsWith("-A ") && !had.has(r))) {
      spawnSync(bin, ["-w", "5", "-t", table, "-D", ...splitRule(rule.slice(3))]);
    }
    const newChains = now.filter((r) => r.startsWith("-N ") && !had.has(r)).map((r) => r.slice(3));
    for (const c of newChains) spawnSync(bin, ["-w", "5", "-t", table, "-F", c]);
    for (const c of newChains) spawnSync(bin, ["-w", "5", "-t", table, "-X", c]);
  }
}

/** Splits an `iptables -S` rule into arguments (quoted comments stay one argument). */
function splitRule(rule: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (const m of rule.matchAll(re)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? ""));
  return out;
}

function cgroupHierarchies(): string[] {
  try {
    return readdirSync(CGROUP_FS)
      .map((d) => join(CGROUP_FS, d))
      .filter((p) => {
        try {
          return statSync(p).isDirectory() && existsSync(join(p, "cgroup.procs"));
        } catch {
          return false;
        }
      });
  } catch {
    return [];
  }
}

/** All cgroup directories under `dir`, deepest first. */
function cgroupTree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: string[] = [];
    try {
      entries = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name));
    } catch {
      return;
    }
    for (const e of entries) walk(e);
    out.push(d);
  };
  walk(dir);
  return out;
}

function createCgroupRoot(): void {
  for (const h of cgroupHierarchies()) {
    const d = join(h, CGROUP_ROOT);
    mkdirSync(d, { recursive: true });
    // A new cpuset cgroup starts with no CPUs or memory nodes: give it the parent's.
    if (h.endsWith("/cpuset")) {
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        try {
          writeFileSync(join(d, f), readFileSync(join(h, f), "utf8").trim());
        } catch {
          // the kubelet reports a cpuset it cannot use
        }
      }
    }
  }
}

/** Thaws and SIGKILLs every process in the node's cgroups, then removes the cgroups. */
function removeCgroups(): void {
  const freezer = join(CGROUP_FS, "freezer", CGROUP_ROOT);
  for (const d of cgroupTree(freezer)) {
    try {
      writeFileSync(join(d, "freezer.state"), "THAWED");
    } catch {
      // not a freezer cgroup or already gone
    }
  }
  for (let round = 0; round < 50; round++) {
    let found = 0;
    for (const h of cgroupHierarchies()) {
      for (const d of cgroupTree(join(h, CGROUP_ROOT))) {
        let pids: string[] = [];
        try {
          pids = readFileSync(join(d, "cgroup.procs"), "utf8").split("\n").filter(Boolean);
        } catch {
          continue;
        }
        for (const p of pids) {
          found++;
          try {
            process.kill(Number(p), "SIGKILL");
          } catch {
            // exited meanwhile
          }
        }
      }
    }
    if (found === 0) break;
    spawnSync("sleep", ["0.1"]);
  }
  for (const h of cgroupHierarchies()) {
    for (const d of cgroupTree(join(h, CGROUP_ROOT))) {
      try {
        rmSync(d, { recursive: false, force: true });
      } catch {
        spawnSync("rmdir", [d]);
      }
      if (existsSync(d)) spawnSync("rmdir", [d]);
    }
  }
}

/**
 * The node's own processes: containerd's shims (re-parented to init, named by our socket) and, after a
 * crashed run, its containerd and kubelet (their arguments name files under NODE_DIR).
 */
function nodePids(): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      const shim = (argv[0] ?? "").endsWith("containerd-shim-runc-v2") && argv.includes(CONTAINERD_SOCKET);
      if (shim || argv.some((a) => a.includes(`${NODE_DIR}/`))) out.push(Number(e));
    } catch {
      // exited
    }
  }
  return out;
}

function mountsUnder(prefixes: string[]): string[] {
  let lines: string[] = [];
  try {
    lines = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  } catch {
    return [];
  }
  const points = lines
    .map((l) => l.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => prefixes.some((pre) => p === pre || p.startsWith(`${pre}/`)));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function unmountAll(prefixes: string[]): void {
  for (let i = 0; i < 5; i++) {
    const ms = mountsUnder(prefixes);
    if (ms.length === 0) return;
    for (const m of ms) if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m]);
  }
}

let containerdChild: ChildProcess | undefined;

/**
 * Undoes everything the node changed on this host. Synchronous (it also runs from the process's exit
 * hook); safe to run more than once and after a crash. The kubelet must be stopped first.
 */
export function teardownNodeHost(): void {
  let state: HostState;
  try {
    state = JSON.parse(readFileSync(HOST_STATE, "utf8")) as HostState;
  } catch {
    // No snapshot: nothing on this host is the node's (the default containerd paths may be someone
    // else's), so nothing is removed; only a lock of a dead process goes.
    releaseStaleLock();
    return;
  }
  if (state.pid !== process.pid && alive(state.pid)) return; // a running node, not ours
  removeCgroups();
  const cpid = containerdChild?.pid;
  if (cpid !== undefined && containerdChild?.exitCode === null) {
    try {
      process.kill(cpid, "SIGKILL");
    } catch {
      // gone
    }
  }
  containerdChild = undefined;
  for (const p of nodePids()) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  unmountAll([CONTAINERD_ROOT, NODE_DIR, NODE_RUN_DIR]);
  for (const f of [CONTAINERD_SOCKET, `${CONTAINERD_SOCKET}.ttrpc`]) rmSync(f, { force: true });
  if (mountsUnder([CONTAINERD_ROOT, NODE_DIR]).length === 0) {
    rmSync(CONTAINERD_ROOT, { recursive: true, force: true });
    rmSync(NODE_DIR, { recursive: true, force: true });
  }
  spawnSync("ip", ["link", "del", BRIDGE]);
  for (const [k, v] of Object.entries(state.sysctls)) if (readSysctl(k) !== v) writeSysctl(k, v);
  restoreIptables(state.iptables);
  if (mountsUnder([NODE_RUN_DIR]).length === 0) rmSync(NODE_RUN_DIR, { recursive: true, force: true });
}

function releaseStaleLock(): void {
  try {
    const holder = Number(readFileSync(LOCK, "utf8").trim());
    if (holder === process.pid || !alive(holder)) rmSync(LOCK, { force: true });
  } catch {
    // no lock
  }
}

let exitHook = false;

function takeLock(): void {
  mkdirSync(NODE_RUN_DIR, { recursive: true });
  for (;;) {
    try {
      writeFileSync(LOCK, String(process.pid), { flag: "wx" });
      return;
    } catch {
      const holder = Number(readFileSync(LOCK, "utf8").trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && alive(holder)) {
        throw new Error(`the test node is in use by process ${String(holder)} (${LOCK}); one node per machine — wait for it or run npm run cluster:down`);
      }
      // A previous run died without tearing down: undo what it left, then take the lock.
      process.stderr.write(`node: cleaning up after a previous run (process ${String(holder)} is gone)\n`);
      teardownNodeHost();
      mkdirSync(NODE_RUN_DIR, { recursive: true });
    }
  }
}

function sha256(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

async function packToBuffer(p: tar.Pack): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** The pause image as an OCI layout tar: one static binary, built here with gcc (cached by source hash). */
async function pauseImageTar(cacheDir: string): Promise<string> {
  const src = readFileSync(PAUSE_SRC);
  const tag = createHash("sha256").update(src).digest("hex").slice(0, 12);
  const out = join(cacheDir, `pause-${tag}.tar`);
  if (existsSync(out)) return out;
  mkdirSync(cacheDir, { recursive: true });
  const bin = join(cacheDir, `pause-${tag}`);
  sh("gcc", ["-static", "-O2", "-s", "-o", bin, PAUSE_SRC]);
  const mtime = new Date(0);
  const lp = tar.pack();
  lp.entry({ name: "pause", mode: 0o755, mtime, uid: 0, gid: 0 }, readFileSync(bin));
  lp.finalize();
  const layer = await packToBuffer(lp);
  const gz = gzipSync(layer);
  const config = Buffer.from(JSON.stringify({
    architecture: "amd64", os: "linux", config: { Entrypoint: ["/pause"] },
    rootfs: { type: "layers", diff_ids: [sha256(layer)] },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha256(gz), size: gz.length }],
  }));
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(manifest), size: manifest.length,
      annotations: { "io.containerd.image.name": PAUSE_IMAGE, "org.opencontainers.image.ref.name": "1" },
    }],
  }));
  const p = tar.pack();
  p.entry({ name: "oci-layout" }, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  p.entry({ name: "index.json" }, index);
  for (const b of [gz, config, manifest]) p.entry({ name: `blobs/sha256/${sha256(b).slice(7)}` }, b);
  p.finalize();
  writeFileSync(out, await packToBuffer(p));
  return out;
}

function containerdConfig(registries: string[]): string {
  const state = join(NODE_RUN_DIR, "containerd");
  const cri = '[plugins."io.containerd.grpc.v1.cri"]';
  const lines = [
    "version = 2",
    `root = "${CONTAINERD_ROOT}"`,
    `state = "${state}"`,
    "[grpc]",
    `  address = "${CONTAINERD_SOCKET}"`,
    "[ttrpc]",
    `  address = "${CONTAINERD_SOCKET}.ttrpc"`,
    "[debug]",
    '  address = ""',
    "[metrics]",
    '  address = ""',
    cri,
    `  sandbox_image = "${PAUSE_IMAGE}"`,
    // These VMs lack CAP_SYS_RESOURCE: an oom_score_adj below the runtime's own fails every sandbox.
    "  restrict_oom_score_adj = true",
    // Network namespaces under our state directory, not the machine-wide /var/run/netns.
    "  netns_mounts_under_state_dir = true",
    "  stream_server_address = \"127.0.0.1\"",
    `${cri.slice(0, -1)}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    `${cri.slice(0, -1)}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `${cri.slice(0, -1)}.containerd.runtimes.runc.options]`,
    "  SystemdCgroup = false",
    // Other containerd instances on this machine use runc's default root.
    `  Root = "${join(NODE_RUN_DIR, "runc")}"`,
    `${cri.slice(0, -1)}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = "${join(NODE_DIR, "cni", "net.d")}"`,
    "  max_conf_num = 1",
  ];
  // The test registry speaks plain HTTP on the bridge address.
  for (const r of registries) {
    lines.push(`${cri.slice(0, -1)}.registry.mirrors."${r}"]`, `  endpoint = ["http://${r}"]`);
  }
  return `${lines.join("\n")}\n`;
}

function cniConfig(): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: "ssc-node",
    plugins: [{
      type: "bridge",
      bridge: BRIDGE,
      isGateway: false,
      ipMasq: false,
      hairpinMode: true,
      ipam: {
        type: "host-local",
        dataDir: join(NODE_DIR, "cni", "ipam"),
        // No routes: nothing in a pod leads off the bridge.
        ranges: [[{ subnet: POD_SUBNET, rangeStart: "10.213.0.10", rangeEnd: "10.213.0.250" }]],
      },
    }],
  }, null, 2);
}

function ensureBridge(): void {
  if (spawnSync("ip", ["link", "show", BRIDGE], { stdio: "ignore" }).status !== 0) {
    sh("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  }
  spawnSync("ip", ["addr", "add", `${BRIDGE_IP}/24`, "dev", BRIDGE]);
  sh("ip", ["link", "set", BRIDGE, "up"]);
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/**
 * Takes the node lock, snapshots the host settings, creates the bridge and the cgroup root, and starts
 * containerd with CRI; imports the pause image. `registries` are served over plain HTTP.
 */
export async function startNodeHost(opts: { cacheDir: string; registries: string[] }): Promise<NodeHost> {
  if (process.getuid?.() !== 0) throw new Error("the test node needs root (kubelet, containerd, bridge)");
  takeLock();
  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      if (existsSync(LOCK) && readFileSync(LOCK, "utf8").trim() === String(process.pid)) teardownNodeHost();
    });
  }
  // Before anything is changed (a failure here must not remove what is someone else's).
  const taken = [CONTAINERD_SOCKET, CONTAINERD_ROOT].filter((p) => existsSync(p));
  if (taken.length > 0) {
    rmSync(LOCK, { force: true });
    throw new Error(`${taken.join(" and ")} exist(s) and belong to another containerd: the test node uses containerd's default socket and root`);
  }
  try {
    writeFileSync(HOST_STATE, JSON.stringify(snapshotHost()));
    for (const d of [NODE_DIR, join(NODE_DIR, "cni", "net.d"), CONTAINERD_ROOT, "/run/containerd"]) mkdirSync(d, { recursive: true });
    writeFileSync(join(NODE_DIR, "cni", "net.d", "10-ssc-node.conflist"), cniConfig());
    writeFileSync(join(NODE_DIR, "containerd.toml"), containerdConfig(opts.registries));
    ensureBridge();
    createCgroupRoot();

    const containerdLog = join(NODE_DIR, "containerd.log");
    const fd = openSync(containerdLog, "a");
    const child = spawn("containerd", ["--config", join(NODE_DIR, "containerd.toml")], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    containerdChild = child;
    const ctr = (args: string[], timeoutMs = 120_000): string =>
      sh("ctr", ["-a", CONTAINERD_SOCKET, "-n", "k8s.io", ...args], { timeoutMs });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`containerd exited with ${String(child.exitCode)}:\n${readFileSync(containerdLog, "utf8").slice(-2000)}`);
      if (existsSync(CONTAINERD_SOCKET) && spawnSync("ctr", ["-a", CONTAINERD_SOCKET, "version"], { timeout: 3_000 }).status === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd not ready after 30 s:\n${readFileSync(containerdLog, "utf8").slice(-2000)}`);
      await sleep(100);
    }
    const importImage = (tarPath: string): void => {
      ctr(["images", "import", "--snapshotter", "overlayfs", tarPath], 600_000);
    };
    importImage(await pauseImageTar(opts.cacheDir));
    let stopped = false;
    return {
      socket: CONTAINERD_SOCKET,
      containerdLog,
      ctr,
      importImage,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        if (child.exitCode === null) {
          child.kill("SIGTERM");
          await Promise.race([new Promise((r) => child.once("exit", r)), sleep(5_000)]);
        }
        teardownNodeHost();
      },
    };
  } catch (err) {
    teardownNodeHost();
    throw err;
  }
}
