// The product installed as users install it, on the test cluster's real node (cluster.ts `node: true`):
// images built from deploy/images/*.Dockerfile from source (test/env/images/build.sh) and imported
// into the node's containerd; Metacontroller from its upstream manifests (its module source) running
// in the cluster as an image of the binary built from the pinned module; then
// `kubectl apply -k deploy/overlays/test-node`. A real registry listens on the node's bridge address.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { BASE_IMAGE, buildBaseImage } from "./base-image.js";
import { CACHE_DIR, NODE_API_PORT, startCluster, waitFor, type Cluster } from "./cluster.js";
import { batchSandboxCrd, BATCH_SANDBOX_CRD, SNAPSHOT_CRD } from "./cluster-e2e.js";
import { inCI } from "./components.js";
import { BRIDGE_IP, REGISTRY_HOST } from "./node-host.js";
import { startRegistry, type TestRegistry } from "./registry.js";

export const IMAGES_DIR = join(CACHE_DIR, "images");
export const IMAGES_BUILD_SCRIPT = fileURLToPath(new URL("../env/images/build.sh", import.meta.url));
export const TEST_OVERLAY = fileURLToPath(new URL("../../deploy/overlays/test-node", import.meta.url));
export const HOOK_SERVER_IMAGE = "localhost/sandbox-snapshot/sandbox-snapshot-controller:local";
export const COMMITTER_IMAGE = "localhost/sandbox-snapshot/image-committer:local";
export const METACONTROLLER_IMAGE = "localhost/ssc/metacontroller:v1.5.20";
/** The image the journey's sandbox pods run (busybox; base-image.ts). */
export const SANDBOX_IMAGE = BASE_IMAGE;
/** SNAPSHOT_REGISTRY of the test overlay. */
export const SNAPSHOT_REGISTRY = `${REGISTRY_HOST}/snapshots`;
export const CONTROLLER_NAMESPACE = "sandbox-snapshot-system";
const IMAGE_ARCHIVES = ["hook-server", "committer", "metacontroller"];
const MC_SOURCE_FILE = join(CACHE_DIR, "metacontroller", "source-dir");

/** Runs test/env/images/build.sh (minutes cold, a second warm); undefined on success, else why not. */
export function buildImages(timeoutMs = 30 * 60_000): string | undefined {
  const t0 = Date.now();
  const r = spawnSync("bash", [IMAGES_BUILD_SCRIPT], { stdio: ["ignore", "inherit", "inherit"], timeout: timeoutMs });
  const secs = Math.round((Date.now() - t0) / 1000);
  if (r.status === 0) {
    process.stderr.write(`images-build: images ready after ${String(secs)}s\n`);
    return undefined;
  }
  return `test/env/images/build.sh failed (status ${String(r.status)}${r.signal ? `, signal ${r.signal}` : ""}) after ${String(secs)}s`;
}

/** A reason to skip the node suites (loud), or undefined; with CI=true a missing piece throws. */
export function missingImages(): string | undefined {
  const absent = IMAGE_ARCHIVES.filter((a) => !existsSync(join(IMAGES_DIR, `${a}.tar`)));
  if (!existsSync(MC_SOURCE_FILE)) absent.push("metacontroller manifests");
  if (process.getuid?.() !== 0) absent.push("root");
  if (absent.length === 0) return undefined;
  const why = `test node images not built: ${absent.join(", ")} — run test/env/images/build.sh`;
  if (inCI) throw new Error(`${why} — CI=true forbids skipping`);
  process.stderr.write(`\n!!! SKIPPING: ${why}\n\n`);
  return why;
}

export interface InstalledCluster {
  cluster: Cluster;
  registry: TestRegistry;
  /** Runs kubectl (async) with the admin kubeconfig; throws on a non-zero exit. */
  kubectl(args: string[], input?: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Metacontroller's own manifests (manifests/production of its module source, as
 * `kubectl apply -k https://github.com/metacontroller/metacontroller/manifests/production` installs
 * them), with the image built here and host networking: no kube-proxy, so it reaches the API server
 * on 127.0.0.1 (like the hook server; deploy/overlays/test-node).
 */
function metacontrollerKustomization(dir: string): void {
  const src = join(readFileSync(MC_SOURCE_FILE, "utf8").trim(), "manifests", "production");
  cpSync(src, join(dir, "upstream"), { recursive: true });
  const k = {
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: ["upstream"],
    images: [{ name: "metacontrollerio/metacontroller", newName: METACONTROLLER_IMAGE.split(":")[0], newTag: METACONTROLLER_IMAGE.split(":")[1] }],
    patches: [{
      target: { kind: "StatefulSet", name: "metacontroller" },
      patch: stringify([
        { op: "add", path: "/spec/template/spec/hostNetwork", value: true },
        { op: "add", path: "/spec/template/spec/containers/0/env", value: [
          { name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1" },
          { name: "KUBERNETES_SERVICE_PORT", value: String(NODE_API_PORT) },
        ] },
      ]),
    }],
  };
  writeFileSync(join(dir, "kustomization.yaml"), stringify(k));
}

/** Where the committer image is pushed: the test registry, as a user's cluster pulls it from theirs. */
export const COMMITTER_REPOSITORY = `${REGISTRY_HOST}/sandbox-snapshot/image-committer`;

/**
 * Pushes the committer image to the test registry and returns the digest the registry serves it by.
 * An image loaded with `ctr images import` has no repo digest in the CRI's store, so a reference by
 * digest to it would not resolve; pushed, the kubelet pulls `<repository>@<digest>` as in a real cluster.
 */
async function pushCommitter(node: { ctr(args: string[], timeoutMs?: number): string }, registry: TestRegistry): Promise<string> {
  const ref = `${COMMITTER_REPOSITORY}:local`;
  node.ctr(["images", "tag", "--force", COMMITTER_IMAGE, ref]);
  node.ctr(["images", "push", "--plain-http", ref], 600_000);
  const repo = COMMITTER_REPOSITORY.slice(REGISTRY_HOST.length + 1);
  const r = await fetch(`${registry.httpUrl}/v2/${repo}/manifests/local`, {
    method: "HEAD",
    headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json" },
  });
  const digest = r.headers.get("docker-content-digest");
  if (r.status !== 200 || digest === null || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new Error(`the test registry has no digest for ${ref} after the push (HEAD ${String(r.status)})`);
  }
  return digest;
}

/**
 * deploy/overlays/test-node with COMMITTER_IMAGE as `<repository>@<digest>` (the digest exists only
 * once the image is built), in a temp directory: the same file with its relative paths rebased.
 */
function pinnedOverlay(dir: string, digest: string): string {
  cpSync(TEST_OVERLAY, dir, { recursive: true });
  const deploy = join(TEST_OVERLAY, "..", "..");
  const k = readFileSync(join(TEST_OVERLAY, "kustomization.yaml"), "utf8")
    // kustomize refuses absolute roots: paths relative to the copy.
    .replace("../../base", relative(dir, join(deploy, "base")))
    .replace("../../components/admission", relative(dir, join(deploy, "components", "admission")))
    .replace(`COMMITTER_IMAGE=${COMMITTER_REPOSITORY}:local`, `COMMITTER_IMAGE=${COMMITTER_REPOSITORY}@${digest}`);
  if (!k.includes(`${COMMITTER_REPOSITORY}@${digest}`)) throw new Error(`${TEST_OVERLAY}/kustomization.yaml does not set COMMITTER_IMAGE=${COMMITTER_REPOSITORY}:local`);
  writeFileSync(join(dir, "kustomization.yaml"), k);
  return dir;
}

/** Waits (up to 5 min: image imports and first starts are slow on a loaded machine) for a rollout. */
async function rolledOut(kubectl: (args: string[]) => Promise<string>, ns: string, what: string): Promise<void> {
  await waitFor(`${ns}/${what} rolled out`, async () => {
    await kubectl(["-n", ns, "rollout", "status", what, "--timeout=60s"]);
    return true;
  }, 300_000, 1_000);
}

/** Starts the cluster with its node and installs everything; the registry runs on REGISTRY_HOST. */
export async function startInstalledCluster(opts: { keep?: boolean } = {}): Promise<InstalledCluster> {
  const cluster = await startCluster({ node: true, metacontroller: false, ...(opts.keep === true ? { keep: true } : {}) });
  const tmp = mkdtempSync(join(tmpdir(), "ssc-install-"));
  let registry: TestRegistry | undefined;
  const kubectl = async (args: string[], input?: string): Promise<string> => {
    const r = await cluster.kubectlAsync(args, input !== undefined ? { input } : {});
    if (r.status !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${String(r.status)}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  try {
    const node = cluster.node;
    if (!node) throw new Error("startCluster({ node: true }) returned no node");
    registry = await startRegistry({ address: REGISTRY_HOST });
    for (const a of IMAGE_ARCHIVES) node.importImage(join(IMAGES_DIR, `${a}.tar`));
    const base = await buildBaseImage(SANDBOX_IMAGE);
    writeFileSync(join(tmp, "sandbox-base.tar"), base.tar);
    node.importImage(join(tmp, "sandbox-base.tar"));

    metacontrollerKustomization(join(tmp, "metacontroller"));
    await kubectl(["apply", "-k", join(tmp, "metacontroller")]);
    await rolledOut(kubectl, "metacontroller", "statefulset/metacontroller");

    // As users do (docs/quick-start.md step 4), with the test overlay — COMMITTER_IMAGE pinned by the
    // digest the test registry serves it by (the admission policies admit only a digest-pinned committer).
    await kubectl(["apply", "-k", pinnedOverlay(join(tmp, "overlay"), await pushCommitter(node, registry))]);
    await cluster.apply([batchSandboxCrd]);
    await cluster.waitForCrds([SNAPSHOT_CRD, BATCH_SANDBOX_CRD]);
    await rolledOut(kubectl, CONTROLLER_NAMESPACE, "deployment/sandbox-snapshot-controller");
    await waitFor("hook server /readyz on the bridge", async () => {
      const r = await fetch(`http://${BRIDGE_IP}:8080/readyz`).catch(() => undefined);
      return r?.ok === true;
    }, 60_000, 500);
  } catch (err) {
    // What the cluster looked like, for the failure message.
    const state = await Promise.all([
      cluster.kubectlAsync(["get", "pods", "-A", "-o", "wide"]),
      cluster.kubectlAsync(["get", "events", "-A", "--sort-by=.lastTimestamp"]),
    ]);
    const detail = `${state.map((r) => r.stdout + r.stderr).join("\n").split("\n").slice(-60).join("\n")}\n--- kubelet log (tail)\n${cluster.logTail("kubelet", 30)}`;
    await registry?.close();
    await cluster.stop();
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${detail}`, { cause: err });
  }
  const reg = registry;
  return {
    cluster,
    registry: reg,
    kubectl,
    stop: async () => {
      await cluster.stop();
      await reg.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}
