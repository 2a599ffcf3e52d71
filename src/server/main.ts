// Entry point of the hook server: `npm start` or the container image's command.
import { pino } from "pino";
import { ConfigError, loadConfig } from "../config/config.js";
import { createKubeAccess, loadKubeConfig } from "./kube.js";
import { startServer } from "./app.js";
import { createCleanupRunner, loadCleanupCredentials } from "./cleanup-runner.js";
import { createImageVerifier } from "./image-verifier.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sandbox-snapshot-controller: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = pino({ level: config.logLevel, base: { component: "sandbox-snapshot-hooks" } });
  let kube;
  try {
    const kc = loadKubeConfig(process.env);
    kube = kc ? createKubeAccess(kc) : undefined;
  } catch (err) {
    process.stderr.write(
      `sandbox-snapshot-controller: invalid setting KUBECONFIG: ${err instanceof Error ? err.message.split("\n")[0] ?? "" : String(err)}\n`,
    );
    process.exit(2);
  }
  if (!kube) {
    log.warn(
      "no Kubernetes API access (not in a cluster and KUBECONFIG unset): customize's BatchSandbox read, direct source look-ups, the push-Secret check and Events are skipped",
    );
  }
  let cleanup;
  let verifier;
  try {
    cleanup = await createCleanupRunner(config, { log, kube });
    verifier = await createImageVerifier(config, { log, dockerConfig: await loadCleanupCredentials(config) });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sandbox-snapshot-controller: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const server = await startServer(config, { log, kube, cleanup, verifier, clock: () => new Date() });
  log.info(
    { hook: `${config.hookListen.host}:${server.hookPort}`, metrics: `${config.metricsListen.host}:${server.metricsPort}`, registry: config.registry },
    "hook server listening",
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down: finishing in-flight requests");
    server.close().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, "error during shutdown");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => {
    stop("SIGTERM");
  });
  process.on("SIGINT", () => {
    stop("SIGINT");
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`sandbox-snapshot-controller: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
