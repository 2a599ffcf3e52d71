// `npm run cluster:up`: builds what is missing (cluster binaries, images from source), then starts the
// test node with the product installed (test/support/cluster-install.ts) in a background process that
// holds it until `npm run cluster:down`. Prints the kubeconfig path and the registry address.
// `up.ts --serve` is that background process.
import { spawn } from "node:child_process";
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BIN_DIR, buildClusterBinaries } from "../../support/cluster.js";
import { buildImages, startInstalledCluster } from "../../support/cluster-install.js";
import { NODE_RUN_DIR, REGISTRY_HOST } from "../../support/node-host.js";

export const STATE_FILE = join(NODE_RUN_DIR, "cluster-up.json");
export const KUBECONFIG = join(NODE_RUN_DIR, "admin.kubeconfig");
const LOG = "/tmp/ssc-cluster-up.log";

interface UpState {
  pid: number;
  kubeconfig: string;
  registry: string;
  logs: Record<string, string>;
}

async function serve(): Promise<void> {
  const env = await startInstalledCluster();
  copyFileSync(env.cluster.kubeconfig, KUBECONFIG);
  const state: UpState = { pid: process.pid, kubeconfig: KUBECONFIG, registry: REGISTRY_HOST, logs: env.cluster.logs };
  writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void env.stop().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`cluster-up: stop failed: ${String(err)}\n`);
      process.exit(1);
    });
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  setInterval(() => undefined, 1 << 30);
}

async function up(): Promise<number> {
  if (existsSync(STATE_FILE)) {
    const s = JSON.parse(readFileSync(STATE_FILE, "utf8")) as UpState;
    process.stdout.write(`already up (process ${String(s.pid)})\nKUBECONFIG=${s.kubeconfig}\nregistry: ${s.registry}\n`);
    return 0;
  }
  const failed = buildClusterBinaries() ?? buildImages();
  if (failed !== undefined) {
    process.stderr.write(`cluster-up: ${failed}\n`);
    return 1;
  }
  const fd = openSync(LOG, "w");
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--serve"], {
    detached: true,
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  child.unref();
  const t0 = Date.now();
  for (;;) {
    if (existsSync(STATE_FILE)) break;
    if (child.exitCode !== null || Date.now() - t0 > 900_000) {
      process.stderr.write(`cluster-up: failed to start; log ${LOG}:\n${readFileSync(LOG, "utf8").slice(-4000)}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  process.stdout.write([
    `cluster up in ${secs}s (node ssc-node, product installed from deploy/overlays/test-node)`,
    `export KUBECONFIG=${KUBECONFIG}`,
    `export PATH=${BIN_DIR}:$PATH   # kubectl v1.35 built from source`,
    `registry: ${REGISTRY_HOST} (plain HTTP; SNAPSHOT_REGISTRY=${REGISTRY_HOST}/snapshots)`,
    `logs: ${LOG}; stop with: npm run cluster:down`,
    "",
  ].join("\n"));
  return 0;
}

if (process.argv.includes("--serve")) {
  serve().catch((err: unknown) => {
    process.stderr.write(`cluster-up: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
} else {
  process.exitCode = await up();
}
