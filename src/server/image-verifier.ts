// Reads what the registry holds at a snapshot's references (thin shell for src/reconcile/image-check.ts):
// the manifest at each tag and/or digest the core planned, its snapshot-uid annotation and the size
// of its last (the snapshot's) layer. Uses the controller-wide registry credential
// (REGISTRY_CLEANUP_DOCKER_CONFIG), within a total time budget well inside Metacontroller's 10 s
// hook timeout. Never throws: whatever goes wrong is an "error" lookup, retried by the core.
import type { Logger } from "pino";
import type { ControllerConfig } from "../config/config.js";
import { ANNOTATION_SNAPSHOT_UID } from "../contract/commit-job.js";
import type { ImageCheck, ImageCheckPlan, ImageCheckResult, ImageCheckResults, ManifestLookup } from "../reconcile/image-check.js";
import { type CallOptions, type DockerConfig, type FetchedManifest, isRegistryError, type RetryPolicy } from "../registry/index.js";
import { loadCleanupCredentials, secretsOf } from "./cleanup-runner.js";
import { controllerClient, perRegistry } from "./registry-clients.js";

/** The one registry operation verification needs (RegistryClient has it; tests may pass a fake). */
export interface VerifyRegistry {
  getManifest(repository: string, reference: string, opts: CallOptions): Promise<FetchedManifest>;
}

export type ImageVerifier = (plan: ImageCheckPlan, log: Logger) => Promise<ImageCheckResults>;

export interface ImageVerifierOptions {
  /** Total time for the registry reads of one hook call (default 3 s). */
  budgetMs?: number;
  /** Timeout of one HTTP attempt (default 1.5 s). */
  attemptTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  concurrency?: number;
  /** The controller-wide credential, when already loaded; else read from REGISTRY_CLEANUP_DOCKER_CONFIG. */
  dockerConfig?: DockerConfig | undefined;
  log?: Logger;
  /** Replaces the registry client (tests). */
  clientFor?: (registry: string) => VerifyRegistry;
}

export const DEFAULT_VERIFY_BUDGET_MS = 3000;

function lastLayerSize(m: FetchedManifest): number | undefined {
  const layers = (m.manifest as { layers?: { size?: unknown }[] }).layers;
  const size = Array.isArray(layers) ? layers[layers.length - 1]?.size : undefined;
  return typeof size === "number" && Number.isSafeInteger(size) && size >= 0 ? size : undefined;
}

async function withDeadline<T>(call: Promise<T>, hardDeadline: number, late: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const give = new Promise<T>((resolve) => {
    timer = setTimeout(() => {
      resolve(late());
    }, Math.max(0, hardDeadline - Date.now()));
  });
  try {
    return await Promise.race([call, give]);
  } finally {
    clearTimeout(timer);
  }
}

/** Builds the verifier the hook server calls before the pure sync. */
export async function createImageVerifier(config: ControllerConfig, opts: ImageVerifierOptions = {}): Promise<ImageVerifier> {
  const dockerConfig = "dockerConfig" in opts ? opts.dockerConfig : await loadCleanupCredentials(config, opts.log);
  const scrubber = secretsOf(dockerConfig);
  const budgetMs = opts.budgetMs ?? DEFAULT_VERIFY_BUDGET_MS;
  const concurrency = opts.concurrency ?? 4;
  const client = perRegistry<VerifyRegistry>(
    opts.clientFor ??
      controllerClient(config, dockerConfig, {
        timeoutMs: opts.attemptTimeoutMs ?? 1500,
        maxDelayMs: 300,
        ...(opts.retry !== undefined ? { retry: opts.retry } : {}),
        ...(opts.log !== undefined ? { log: opts.log.child({ component: "registry-verify" }) } : {}),
      }),
  );

  const lookup = async (c: ImageCheck, reference: string, call: CallOptions): Promise<ManifestLookup> => {
    try {
      const m = await client(c.registry).getManifest(c.repository, reference, call);
      return { outcome: "found", digest: m.digest, snapshotUid: m.annotations[ANNOTATION_SNAPSHOT_UID], sizeBytes: lastLayerSize(m) };
    } catch (err) {
      if (isRegistryError(err, "not-found")) return { outcome: "not-found" };
      return { outcome: "error", message: scrubber.scrub(err instanceof Error ? err.message : String(err)) };
    }
  };

  const checkOne = async (c: ImageCheck, deadline: number): Promise<ImageCheckResult> => {
    const call: CallOptions = { deadline };
    const atTag = c.tag !== undefined ? await lookup(c, c.tag, call) : undefined;
    // The tag already shows the claimed digest: reading it again by digest adds nothing.
    const digest = c.digest;
    const same = atTag?.outcome === "found" && atTag.digest === digest;
    const atDigest = digest !== undefined && !same ? await lookup(c, digest, call) : undefined;
    return { containerName: c.containerName, ...(atTag !== undefined ? { atTag } : {}), ...(atDigest !== undefined ? { atDigest } : {}) };
  };

  return async (plan, log) => {
    const deadline = Date.now() + budgetMs;
    const late = (c: ImageCheck) => (): ImageCheckResult => {
      const e: ManifestLookup = { outcome: "error", message: `registry read of ${c.imageUri} did not finish within the ${budgetMs} ms budget` };
      return { containerName: c.containerName, ...(c.tag !== undefined ? { atTag: e } : {}), ...(c.digest !== undefined ? { atDigest: e } : {}) };
    };
    const results = new Array<ImageCheckResult>(plan.checks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = next++;
        const c = plan.checks[i];
        if (c === undefined) return;
        results[i] = await withDeadline(checkOne(c, deadline), deadline + 300, late(c));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, plan.checks.length)) }, worker));
    for (const r of results) {
      for (const [where, l] of [["tag", r.atTag], ["digest", r.atDigest]] as const) {
        if (l?.outcome === "error") log.warn({ container: r.containerName, where, purpose: plan.purpose, error: l.message }, "registry verification: no answer");
      }
    }
    log.debug({ purpose: plan.purpose, results }, "registry verification");
    return { purpose: plan.purpose, results };
  };
}
