// A real, single-machine Kubernetes control plane for the cluster tests, everything on 127.0.0.1:
//   etcd (Debian etcd-server) → kube-apiserver → kube-controller-manager (Job controller, garbage
//   collector, service accounts) → Metacontroller,
// the Kubernetes and Metacontroller binaries built from Go source by test/env/cluster/build.sh into
// test/env/.cache/bin (the cluster project's global setup runs it). By default no kubelet and no
// scheduler: our Jobs are node-pinned, and a test plays the kubelet's part by writing pod status.
// With `node: true` the cluster gets a real node (node-host.ts: containerd CRI, CNI bridge, pause
// image; here: kubelet and kube-scheduler, and every default controller of kube-controller-manager).
//
// Identities: a throw-away CA (openssl) signs the API server's serving certificate and client
// certificates for the admin (system:masters), kube-controller-manager (system:kube-controller-manager,
// which with --use-service-account-credentials runs each controller under its own service account, as
// in a real cluster) and Metacontroller (system:masters, like its cluster-admin ClusterRole upstream).
// Authorization is Node,RBAC; service-account tokens are signed with a generated RSA key.
import { spawn, spawnSync, execFileSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ApiextensionsV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { parseAllDocuments, stringify } from "yaml";
import { inCI, missingComponents, which } from "./components.js";
import { BRIDGE_IP, CONTAINERD_SOCKET, CGROUP_ROOT, NODE_DIR, NODE_NAME, REGISTRY_HOST, startNodeHost, type NodeHost } from "./node-host.js";

export const CACHE_DIR = fileURLToPath(new URL("../env/.cache/", import.meta.url));
export const BIN_DIR = join(CACHE_DIR, "bin");
export const BUILD_SCRIPT = fileURLToPath(new URL("../env/cluster/build.sh", import.meta.url));
/** Metacontroller's CRDs, copied by build.sh from its module source in the Go module cache. */
export const METACONTROLLER_CRDS = join(CACHE_DIR, "metacontroller", "crds.yaml");
const BUILD_FAILED_MARKER = join(CACHE_DIR, "build-failed.txt");

export const CLUSTER_BINARIES = ["kube-apiserver", "kube-controller-manager", "kubectl", "metacontroller"] as const;
/** The node's binaries (built by the same build.sh run). */
export const NODE_BINARIES = ["kubelet", "kube-scheduler"] as const;
/** The API server's port on 127.0.0.1 when the cluster has a node (deploy/overlays/test-node names it). */
export const NODE_API_PORT = 6443;
export type ClusterBinary = (typeof CLUSTER_BINARIES)[number] | (typeof NODE_BINARIES)[number];

export function binPath(name: ClusterBinary): string {
  return join(BIN_DIR, name);
}

/**
 * Runs build.sh (idempotent; minutes cold, about a second warm). Returns undefined on success or the
 * reason it failed. Called by the cluster project's global setup so a fresh CI machine builds everything.
 */
export function buildClusterBinaries(timeoutMs = 40 * 60_000): string | undefined {
  const t0 = Date.now();
  const r = spawnSync("bash", [BUILD_SCRIPT, "all"], { stdio: ["ignore", "inherit", "inherit"], timeout: timeoutMs });
  const secs = Math.round((Date.now() - t0) / 1000);
  if (r.status === 0) {
    rmSync(BUILD_FAILED_MARKER, { force: true });
    process.stderr.write(`cluster-build: binaries ready after ${secs}s\n`);
    return undefined;
  }
  const why = `test/env/cluster/build.sh failed (status ${String(r.status)}${r.signal ? `, signal ${r.signal}` : ""}) after ${secs}s`;
  writeFileSync(BUILD_FAILED_MARKER, `${why}\n`);
  return why;
}

/**
 * Like missingComponents(): a reason to skip the cluster suite (printed loudly), undefined when
 * everything is there; with CI=true a missing piece throws instead of skipping.
 */
export function missingClusterComponents(opts: { node?: boolean } = {}): string | undefined {
  const debian = missingComponents(opts.node === true ? ["etcd", "openssl", "containerd", "runc", "ctr", "gcc", "ip", "iptables", "buildah"] : ["etcd", "openssl"]);
  if (debian) return debian;
  if (opts.node === true && !existsSync("/usr/lib/cni/bridge")) {
    const why = "CNI plugins missing (/usr/lib/cni/bridge; Debian package containernetworking-plugins)";
    if (inCI) throw new Error(`${why} — CI=true forbids skipping`);
    process.stderr.write(`\n!!! SKIPPING: ${why}\n\n`);
    return why;
  }
  const wanted: ClusterBinary[] = [...CLUSTER_BINARIES, ...(opts.node === true ? NODE_BINARIES : [])];
  const absent: string[] = wanted.filter((b) => !existsSync(binPath(b)));
  if (!existsSync(METACONTROLLER_CRDS)) absent.push("metacontroller CRDs");
  if (absent.length === 0) return undefined;
  const failed = existsSync(BUILD_FAILED_MARKER) ? ` (${readFileSync(BUILD_FAILED_MARKER, "utf8").trim()})` : "";
  const why = `cluster components not built: ${absent.join(", ")}${failed} — run test/env/cluster/build.sh`;
  if (inCI) throw new Error(`${why} — CI=true forbids skipping`);
  process.stderr.write(`\n!!! SKIPPING: ${why}\n\n`);
  return why;
}

/** A free TCP port on 127.0.0.1 (bound and released; good enough for a test machine). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Thrown inside a waitFor callback to stop waiting at once (e.g. the process being waited for died). */
export class FatalWaitError extends Error {}

/**
 * Polls `fn` until it returns a value other than undefined/false, or throws after `timeoutMs`.
 * Errors thrown by `fn` are retried (the last one is reported), except FatalWaitError.
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
      last = undefined;
    } catch (err) {
      if (err instanceof FatalWaitError) throw err;
      last = err;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? `: ${last.message}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
  exitCode: number | null | undefined;
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

// Processes and temp dirs of this module, cleaned up synchronously if the test process exits
// without stop() (also on SIGINT/SIGTERM: Node emits no "exit" event for those by itself).
const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) {
      try {
        c.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
  // Only when nobody else handles the signal (the default "terminate" is then ours to keep):
  // exit as the signal would, which runs the "exit" hook above.
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    if (process.listenerCount(sig) === 0) {
      process.once(sig, () => {
        process.exit(128 + num);
      });
    }
  }
}

function startProc(name: string, bin: string, args: string[], dir: string, env: NodeJS.ProcessEnv = process.env): Proc {
  const log = join(dir, `${name}.log`);
  const fd = openSync(log, "a");
  const child = spawn(bin, args, { stdio: ["ignore", fd, fd], env, cwd: dir });
  closeSync(fd);
  live.add(child);
  installExitHook();
  const p: Proc = {
    name,
    child,
    log,
    exitCode: undefined,
    exited: new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        live.delete(child);
        p.exitCode = code ?? (signal ? -1 : null);
        resolve(code);
      });
      child.once("error", () => {
        live.delete(child);
        p.exitCode = -1;
        resolve(-1);
      });
    }),
  };
  return p;
}

async function stopProc(p: Proc, graceMs = 5_000): Promise<void> {
  if (p.exitCode !== undefined) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => {
    p.child.kill("SIGKILL");
  }, graceMs);
  await p.exited;
  clearTimeout(timer);
}

function assertRunning(p: Proc): void {
  if (p.exitCode !== undefined) {
    throw new FatalWaitError(`${p.name} exited with ${String(p.exitCode)}; last log lines:\n${tail(p.log)}`);
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

interface Pki {
  caCrt: string;
  caKey: string;
  saKey: string;
  saPub: string;
  servingCrt: string;
  servingKey: string;
  clients: Record<"admin" | "controller-manager" | "metacontroller" | "scheduler" | "kubelet" | "apiserver-kubelet", { crt: string; key: string }>;
  /** The kubelet's serving certificate (IP SAN: the bridge address). */
  kubeletServing: { crt: string; key: string };
}

function makePki(dir: string): Pki {
  const f = (n: string): string => join(dir, n);
  openssl(dir, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=cluster-test-ca"]);
  openssl(dir, ["genrsa", "-out", "sa.key", "2048"]);
  openssl(dir, ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
  const sign = (name: string, subj: string, ext: string): void => {
    openssl(dir, ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subj]);
    writeFileSync(f(`${name}.ext`), ext);
    openssl(dir, [
      "x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
      "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`,
    ]);
  };
  sign(
    "apiserver",
    "/CN=kube-apiserver",
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  const client = "extendedKeyUsage=clientAuth\n";
  sign("admin", "/O=system:masters/CN=cluster-test-admin", client);
  sign("controller-manager", "/CN=system:kube-controller-manager", client);
  sign("metacontroller", "/O=system:masters/CN=metacontroller", client);
  sign("scheduler", "/CN=system:kube-scheduler", client);
  sign("kubelet", `/O=system:nodes/CN=system:node:${NODE_NAME}`, client);
  sign("apiserver-kubelet", "/O=system:masters/CN=kube-apiserver-kubelet-client", client);
  sign("kubelet-serving", `/CN=${NODE_NAME}`, `subjectAltName=IP:${BRIDGE_IP},DNS:${NODE_NAME}\nextendedKeyUsage=serverAuth\n`);
  const pair = (n: string): { crt: string; key: string } => ({ crt: f(`${n}.crt`), key: f(`${n}.key`) });
  return {
    caCrt: f("ca.crt"),
    caKey: f("ca.key"),
    saKey: f("sa.key"),
    saPub: f("sa.pub"),
    servingCrt: f("apiserver.crt"),
    servingKey: f("apiserver.key"),
    clients: {
      admin: pair("admin"),
      "controller-manager": pair("controller-manager"),
      metacontroller: pair("metacontroller"),
      scheduler: pair("scheduler"),
      kubelet: pair("kubelet"),
      "apiserver-kubelet": pair("apiserver-kubelet"),
    },
    kubeletServing: pair("kubelet-serving"),
  };
}

function kubeconfigYaml(server: string, caCrt: string, user: string, crt: string, key: string): string {
  const b64 = (p: string): string => readFileSync(p).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: test",
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caCrt)}`,
    "users:",
    `- name: ${user}`,
    "  user:",
    `    client-certificate-data: ${b64(crt)}`,
    `    client-key-data: ${b64(key)}`,
    "contexts:",
    "- name: test",
    "  context:",
    "    cluster: test",
    `    user: ${user}`,
    "current-context: test",
    "",
  ].join("\n");
}

function httpGet(url: string, tls?: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const opts = { method: "GET", timeout: 2_000, ...(tls ?? {}) };
    const req = (u.protocol === "https:" ? httpsRequest : httpRequest)(u, opts, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

export interface KubectlResult {
  status: number;
  stdout: string;
  stderr: string;
}

function runKubectl(kubeconfig: string, args: string[], opts: { input?: string; cwd?: string } = {}): Promise<KubectlResult> {
  return new Promise((resolve) => {
    const child = spawn(binPath("kubectl"), [`--kubeconfig=${kubeconfig}`, ...args], {
      cwd: opts.cwd,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d: string) => (stdout += d));
    child.stderr.on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.once("error", (err) => {
      clearTimeout(timer);
      resolve({ status: -1, stdout, stderr: `${stderr}${err.message}` });
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ status: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

export interface ClusterOptions {
  /** Start Metacontroller too (default true). */
  metacontroller?: boolean;
  /** Metacontroller's klog verbosity (6 logs every hook request and response). */
  metacontrollerVerbosity?: number;
  /** Keep the temp dir (logs, certificates, etcd data) after stop(); also CLUSTER_KEEP=1. */
  keep?: boolean;
  /**
   * A real node (kubelet, kube-scheduler, containerd CRI, CNI bridge; node-host.ts) and every default
   * controller. Needs root; one node per machine (a lock waits for none: a second start fails).
   */
  node?: boolean;
}

export interface Cluster {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig file (system:masters). */
  kubeconfig: string;
  kc: KubeConfig;
  core: CoreV1Api;
  batch: BatchV1Api;
  custom: CustomObjectsApi;
  apiext: ApiextensionsV1Api;
  objects: KubernetesObjectApi;
  dir: string;
  /** Log files of the components, for diagnostics. */
  logs: Record<string, string>;
  /** The node's host side (containerd, bridge) when started with `node: true`. */
  node?: NodeHost;
  /** The node's name when started with `node: true`. */
  nodeName?: string;
  /**
   * Runs our kubectl (built with the API server) with the admin kubeconfig, synchronously: it blocks
   * the event loop, so with an in-process hook server running use kubectlAsync.
   */
  kubectl(args: string[], opts?: { input?: string; cwd?: string }): KubectlResult;
  /** Like kubectl, without blocking the event loop (an in-process hook server keeps answering). */
  kubectlAsync(args: string[], opts?: { input?: string; cwd?: string }): Promise<KubectlResult>;
  /**
   * Creates or updates the objects with `kubectl apply --server-side` (field manager "cluster-test").
   * Not through the client library's typed serializer: it drops fields it does not model under their
   * wire names (a CRD's `x-kubernetes-validations` silently vanished that way).
   */
  apply(objs: readonly KubernetesObject[]): Promise<void>;
  /** Waits until every CRD is Established and served (discovery). */
  waitForCrds(names: readonly string[]): Promise<void>;
  /** Starts Metacontroller if it was not started (or was stopped) — e.g. after installing CRDs. */
  startMetacontroller(): Promise<void>;
  stopMetacontroller(): Promise<void>;
  /** The last `lines` of a component's log. */
  logTail(name: string, lines?: number): string;
  stop(): Promise<void>;
}

/** Reads a multi-document YAML file into Kubernetes objects (empty documents dropped). */
export function readManifests(file: string): KubernetesObject[] {
  return parseAllDocuments(readFileSync(file, "utf8"))
    .map((d) => d.toJS() as KubernetesObject | null)
    .filter((o): o is KubernetesObject => o !== null && typeof o === "object" && typeof o.kind === "string");
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const etcdBin = which("etcd");
  if (!etcdBin) throw new Error("etcd not found (Debian package etcd-server)");
  // With a node: on disk. (Something on the shared test machines empties /dev/shm now and then; a
  // node cluster lives for minutes, and its kubelet's certificates must not vanish under it.)
  const base = existsSync("/dev/shm") && opts.node !== true ? "/dev/shm" : tmpdir();
  const dir = mkdtempSync(join(base, "cluster-test-"));
  const keep = opts.keep === true || process.env.CLUSTER_KEEP === "1";
  installExitHook();
  if (!keep) liveDirs.add(dir);
  const procs: Proc[] = [];
  let mc: Proc | undefined;
  let kubelet: Proc | undefined;
  let nodeHost: NodeHost | undefined;
  let stopped = false;

  const stopAll = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (mc) await stopProc(mc);
    // The kubelet first: the node's teardown then kills its pods and undoes its host changes.
    if (kubelet) await stopProc(kubelet);
    if (nodeHost) await nodeHost.stop();
    for (const p of [...procs].reverse()) await stopProc(p);
    if (keep) process.stderr.write(`cluster: kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  };

  try {
    if (opts.node === true) nodeHost = await startNodeHost({ cacheDir: join(CACHE_DIR, "node"), registries: [REGISTRY_HOST] });
    const pki = makePki(dir);
    const [etcdPort, peerPort, freeApiPort, kcmPort, mcPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    // With a node, the API server's port is fixed: the installed product's host-network pods are told
    // it by the test overlay (deploy/overlays/test-node). The node lock keeps it to one per machine.
    const apiPort = nodeHost ? NODE_API_PORT : freeApiPort;
    const server = `https://127.0.0.1:${String(apiPort)}`;

    // etcd
    const etcdUrl = `http://127.0.0.1:${String(etcdPort)}`;
    const peerUrl = `http://127.0.0.1:${String(peerPort)}`;
    const etcd = startProc("etcd", etcdBin, [
      "--name=test", `--data-dir=${join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`, `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=test=${peerUrl}`, "--initial-cluster-state=new",
      "--log-level=warn",
    ], dir);
    procs.push(etcd);
    await waitFor("etcd /health", async () => {
      assertRunning(etcd);
      const r = await httpGet(`${etcdUrl}/health`);
      return r.status === 200 && r.body.includes("true");
    }, 30_000);

    // kube-apiserver
    const apiserver = startProc("kube-apiserver", binPath("kube-apiserver"), [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", `--secure-port=${String(apiPort)}`,
      `--cert-dir=${join(dir, "apiserver-certs")}`,
      `--tls-cert-file=${pki.servingCrt}`, `--tls-private-key-file=${pki.servingKey}`,
      `--client-ca-file=${pki.caCrt}`,
      "--authorization-mode=Node,RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      // The commit Job is privileged; the admission policies in deploy/ are what restrict it.
      "--allow-privileged=true",
      "--endpoint-reconciler-type=none",
      "--profiling=false",
      ...(nodeHost
        ? [
            "--enable-admission-plugins=NodeRestriction",
            `--kubelet-client-certificate=${pki.clients["apiserver-kubelet"].crt}`,
            `--kubelet-client-key=${pki.clients["apiserver-kubelet"].key}`,
            `--kubelet-certificate-authority=${pki.caCrt}`,
            "--kubelet-preferred-address-types=InternalIP",
          ]
        : []),
      "--v=1",
    ], dir);
    procs.push(apiserver);
    const adminTls = {
      ca: readFileSync(pki.caCrt),
      cert: readFileSync(pki.clients.admin.crt),
      key: readFileSync(pki.clients.admin.key),
    };
    await waitFor("kube-apiserver /readyz", async () => {
      assertRunning(apiserver);
      const r = await httpGet(`${server}/readyz`, adminTls);
      return r.status === 200;
    }, 120_000, 300);

    const writeKubeconfig = (who: keyof Pki["clients"], user: string): string => {
      const file = join(dir, `${who}.kubeconfig`);
      writeFileSync(file, kubeconfigYaml(server, pki.caCrt, user, pki.clients[who].crt, pki.clients[who].key), { mode: 0o600 });
      return file;
    };
    const kubeconfig = writeKubeconfig("admin", "admin");
    const kcmKubeconfig = writeKubeconfig("controller-manager", "kube-controller-manager");
    const mcKubeconfig = writeKubeconfig("metacontroller", "metacontroller");
    const schedKubeconfig = writeKubeconfig("scheduler", "kube-scheduler");
    const kubeletKubeconfig = writeKubeconfig("kubelet", `system:node:${NODE_NAME}`);

    // kube-controller-manager: Job controller, garbage collector, service accounts and their tokens,
    // namespace deletion. Each controller runs under its own service account.
    const kcm = startProc("kube-controller-manager", binPath("kube-controller-manager"), [
      `--kubeconfig=${kcmKubeconfig}`,
      `--authentication-kubeconfig=${kcmKubeconfig}`,
      `--authorization-kubeconfig=${kcmKubeconfig}`,
      "--bind-address=127.0.0.1", `--secure-port=${String(kcmPort)}`,
      `--cert-dir=${join(dir, "kcm-certs")}`,
      // With a node, every default controller (root-ca-cert-publisher's kube-root-ca.crt is what pods'
      // service-account volumes need; Deployments, ReplicaSets, StatefulSets run the installed product).
      nodeHost
        ? "--controllers=*"
        : "--controllers=job-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,namespace-controller",
      "--use-service-account-credentials=true",
      `--service-account-private-key-file=${pki.saKey}`,
      `--root-ca-file=${pki.caCrt}`,
      "--leader-elect=false",
      "--v=1",
    ], dir);
    procs.push(kcm);

    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    // The service-account controller creating `default` proves the controller manager works.
    await waitFor("kube-controller-manager (ServiceAccount default/default)", async () => {
      assertRunning(kcm);
      await core.readNamespacedServiceAccount({ name: "default", namespace: "default" });
      return true;
    }, 90_000, 300);

    const objects = KubernetesObjectApi.makeApiClient(kc);
    const apiext = kc.makeApiClient(ApiextensionsV1Api);

    if (nodeHost) {
      const schedPort = await freePort();
      procs.push(startProc("kube-scheduler", binPath("kube-scheduler"), [
        `--kubeconfig=${schedKubeconfig}`,
        `--authentication-kubeconfig=${schedKubeconfig}`,
        `--authorization-kubeconfig=${schedKubeconfig}`,
        "--bind-address=127.0.0.1", `--secure-port=${String(schedPort)}`,
        "--leader-elect=false",
        "--v=1",
      ], dir));
      kubelet = await startKubelet(dir, pki, kubeletKubeconfig);
      const k = kubelet;
      await waitFor(`node ${NODE_NAME} Ready`, async () => {
        assertRunning(k);
        const n = await core.readNode({ name: NODE_NAME });
        return n.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;
      }, 120_000, 300);
    }

    const apply = async (objs: readonly KubernetesObject[]): Promise<void> => {
      if (objs.length === 0) return;
      const input = objs.map((o) => stringify(o)).join("---\n");
      const r = await runKubectl(kubeconfig, ["apply", "--server-side", "--force-conflicts", "--field-manager=cluster-test", "-f", "-"], { input });
      if (r.status !== 0) throw new Error(`kubectl apply failed (${String(r.status)}): ${r.stderr}${r.stdout}`);
    };

    const waitForCrds = async (names: readonly string[]): Promise<void> => {
      for (const name of names) {
        await waitFor(`CRD ${name} established`, async () => {
          const crd = await apiext.readCustomResourceDefinition({ name });
          return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") === true;
        }, 30_000);
      }
    };

    // Metacontroller's own CRDs, from its source in the Go module cache (build.sh copied them).
    await apply(readManifests(METACONTROLLER_CRDS));
    await waitForCrds(
      readManifests(METACONTROLLER_CRDS)
        .filter((o) => o.kind === "CustomResourceDefinition")
        .map((o) => o.metadata?.name ?? ""),
    );

    const startMetacontroller = async (): Promise<void> => {
      if (mc && mc.exitCode === undefined) return;
      const p = startProc("metacontroller", binPath("metacontroller"), [
        // v1.5.20 always copies --client-config-path over --kubeconfig (even when unset), so this is
        // the flag that works for it (and the deprecated alias later releases still accept).
        `--client-config-path=${mcKubeconfig}`,
        // Picks up CRDs installed by a test within seconds (default 30 s).
        "--discovery-interval=2s",
        `--debug-addr=127.0.0.1:${String(mcPort)}`,
        "--client-go-qps=50", "--client-go-burst=100",
        "--workers=2",
        // One event per object per second instead of per 5 minutes, so tests can read SyncError events.
        "--events-qps=1", "--events-burst=100",
        `--v=${String(opts.metacontrollerVerbosity ?? 4)}`,
      ], dir);
      mc = p;
      await waitFor("metacontroller /metrics", async () => {
        assertRunning(p);
        const r = await httpGet(`http://127.0.0.1:${String(mcPort)}/metrics`);
        return r.status === 200;
      }, 30_000, 200);
    };
    const stopMetacontroller = async (): Promise<void> => {
      if (mc) await stopProc(mc);
    };
    if (opts.metacontroller !== false) await startMetacontroller();

    const logs: Record<string, string> = {};
    for (const p of procs) logs[p.name] = p.log;
    logs.metacontroller = join(dir, "metacontroller.log");
    if (kubelet) logs.kubelet = kubelet.log;
    if (nodeHost) logs.containerd = nodeHost.containerdLog;

    return {
      server,
      kubeconfig,
      kc,
      core,
      batch: kc.makeApiClient(BatchV1Api),
      custom: kc.makeApiClient(CustomObjectsApi),
      apiext,
      objects,
      dir,
      logs,
      ...(nodeHost ? { node: nodeHost, nodeName: NODE_NAME } : {}),
      kubectl: (args, o = {}) => {
        const r = spawnSync(binPath("kubectl"), [`--kubeconfig=${kubeconfig}`, ...args], {
          encoding: "utf8",
          input: o.input,
          cwd: o.cwd,
          timeout: 120_000,
        });
        return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
      },
      kubectlAsync: (args, o = {}) => runKubectl(kubeconfig, args, o),
      apply,
      waitForCrds,
      startMetacontroller,
      stopMetacontroller,
      logTail: (name, lines = 40) => tail(logs[name] ?? join(dir, `${name}.log`), lines),
      stop: stopAll,
    };
  } catch (err) {
    const detail = ["etcd", "kube-apiserver", "kube-controller-manager", "metacontroller", "kube-scheduler", "kubelet"]
      .map((n) => {
        const t = tail(join(dir, `${n}.log`), 15);
        return t ? `--- ${n}.log (tail)\n${t}` : "";
      })
      .filter(Boolean)
      .join("\n");
    await stopAll();
    throw new Error(`startCluster failed: ${err instanceof Error ? err.message : String(err)}\n${detail}`, { cause: err });
  }
}

/**
 * The kubelet, configured for these machines (docs/cluster-tests.md "The node"): cgroup v1 with
 * cgroupfs under CGROUP_ROOT, no swap check, its own oom_score_adj left alone (no CAP_SYS_RESOURCE),
 * webhook authentication and authorization, serving on the bridge address with a CA-signed certificate.
 */
async function startKubelet(dir: string, pki: Pki, kubeconfig: string): Promise<Proc> {
  const [port, healthzPort] = await Promise.all([freePort(), freePort()]);
  const config = {
    apiVersion: "kubelet.config.k8s.io/v1beta1",
    kind: "KubeletConfiguration",
    address: BRIDGE_IP,
    port,
    readOnlyPort: 0,
    healthzBindAddress: "127.0.0.1",
    healthzPort,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.caCrt } },
    authorization: { mode: "Webhook" },
    tlsCertFile: pki.kubeletServing.crt,
    tlsPrivateKeyFile: pki.kubeletServing.key,
    containerRuntimeEndpoint: `unix://${CONTAINERD_SOCKET}`,
    cgroupDriver: "cgroupfs",
    cgroupRoot: CGROUP_ROOT,
    failCgroupV1: false,
    failSwapOn: false,
    oomScoreAdj: 0,
    clusterDomain: "cluster.local",
    // No DNS in this cluster (docs/cluster-tests.md): pods get the host's resolver file, unused.
    resolvConf: "",
    serializeImagePulls: false,
    // The machine's disk is shared and busy: evict only when it is really full.
    evictionHard: { "memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%", "nodefs.inodesFree": "1%" },
    imageGCHighThresholdPercent: 99,
    imageGCLowThresholdPercent: 98,
    maxPods: 60,
    podPidsLimit: -1,
    registerNode: true,
    staticPodPath: "",
    syncFrequency: "10s",
    fileCheckFrequency: "10s",
    nodeStatusUpdateFrequency: "5s",
    shutdownGracePeriod: "0s",
  };
  const configFile = join(NODE_DIR, "kubelet.yaml");
  writeFileSync(configFile, stringify(config));
  const kubeletKubeconfig = join(NODE_DIR, "kubelet.kubeconfig");
  writeFileSync(kubeletKubeconfig, readFileSync(kubeconfig), { mode: 0o600 });
  return startProc("kubelet", binPath("kubelet"), [
    `--config=${configFile}`,
    `--kubeconfig=${kubeletKubeconfig}`,
    `--root-dir=${join(NODE_DIR, "kubelet")}`,
    `--cert-dir=${join(NODE_DIR, "kubelet-pki")}`,
    `--hostname-override=${NODE_NAME}`,
    `--node-ip=${BRIDGE_IP}`,
    "--v=2",
  ], dir);
}
