// The finalize hook's registry clean-up (thin shell): plan (pure), delete manifests within a total
// time budget through the shared registry client, fold the results (pure). Credentials come from the
// controller-wide docker config (REGISTRY_CLEANUP_DOCKER_CONFIG), read once at start-up and never
// logged. The runner never throws: whatever goes wrong is retried later through the stored status.
import type { Logger } from "pino";
import type { SandboxSnapshot, SyncRequest } from "../api/types.js";
import { ConfigError, type ControllerConfig } from "../config/config.js";
import {
  type CleanupFold,
  type CleanupTarget,
  foldCleanup,
  planCleanup,
  type TargetResult,
  witnessProblem,
} from "../reconcile/cleanup.js";
import type { FinalizeCleanup } from "../reconcile/finalize.js";
import { ANNOTATION_SNAPSHOT_UID } from "../reconcile/names.js";
import {
  type CallOptions,
  type DockerConfig,
  DockerConfigError,
  type DeleteOutcome,
  isRegistryError,
  loadDockerConfig,
  type RetryPolicy,
  Scrubber,
} from "../registry/index.js";
import { describeKubeError } from "./kube.js";
import { controllerClient, perRegistry } from "./registry-clients.js";
import type { Metrics } from "./metrics.js";

/** The registry operations clean-up needs (RegistryClient has them; tests may pass a fake). */
export interface CleanupRegistry {
  deleteManifest(repository: string, digest: string, opts: CallOptions): Promise<DeleteOutcome>;
  manifestAnnotations(
    repository: string,
    reference: string,
    opts: CallOptions,
  ): Promise<{ digest: string; annotations: Readonly<Record<string, string>> } | undefined>;
}

/** Matches CleanupRunner in app.ts. */
export type CleanupRun = (req: SyncRequest, now: Date, log: Logger, metrics?: Metrics) => Promise<FinalizeCleanup | undefined>;

export interface CleanupRunnerOptions {
  /** Total time for the registry calls of one hook call (default 4 s; Metacontroller waits 10 s). */
  budgetMs?: number;
  /** Timeout of one HTTP attempt without progress (default 2 s). */
  attemptTimeoutMs?: number;
  /** Retries inside one hook call (default 2 attempts, short delays); later ones go through status. */
  retry?: Partial<RetryPolicy>;
  /** Manifests deleted in parallel (default 4). */
  concurrency?: number;
  /** Start-up and registry-client log lines; per-call lines go to the request's logger. */
  log?: Logger;
  /** Replaces the registry client (tests). */
  clientFor?: (registry: string) => CleanupRegistry;
  /**
   * Reads the SandboxSnapshot from the API server before anything is deleted (verify before delete).
   * Without it the runner trusts its caller (said once at start-up).
   */
  kube?: SnapshotWitness | undefined;
}

/** The API read that vouches for a finalize request (KubeAccess has it). */
export interface SnapshotWitness {
  getSandboxSnapshot(namespace: string, name: string): Promise<SandboxSnapshot | undefined>;
}

export const DEFAULT_BUDGET_MS = 4000;

/**
 * Reads the clean-up docker config. A malformed or unreadable file stops start-up (ConfigError). A
 * missing file means anonymous clean-up, said once in the log: deploy/ mounts the credential Secret as
 * optional at a fixed path, so a cluster without one still starts.
 */
export async function loadCleanupCredentials(config: ControllerConfig, log?: Logger): Promise<DockerConfig | undefined> {
  const path = config.cleanupDockerConfig;
  if (path === undefined) return undefined;
  let dc: DockerConfig | undefined;
  try {
    dc = await loadDockerConfig(path);
  } catch (err) {
    // DockerConfigError messages name the file and the problem, never the content.
    throw new ConfigError("REGISTRY_CLEANUP_DOCKER_CONFIG", err instanceof DockerConfigError ? err.message : "cannot be read");
  }
  if (dc === undefined) {
    log?.warn(
      { setting: "REGISTRY_CLEANUP_DOCKER_CONFIG", path },
      "the registry clean-up docker config does not exist: manifests are deleted anonymously (mount a docker config there to use credentials; restart to pick up a new one)",
    );
  }
  return dc;
}

/** Every secret in the docker config, so no message carries one (shared with the image verifier). */
export function secretsOf(dc: DockerConfig | undefined): Scrubber {
  const s = new Scrubber();
  for (const c of dc?.auths.values() ?? []) {
    s.add(c.password);
    s.add(c.identityToken);
    s.add(c.registryToken);
    if (c.username !== undefined && c.password !== undefined) s.add(Buffer.from(`${c.username}:${c.password}`).toString("base64"));
  }
  return s;
}

function snapshotRef(snap: SandboxSnapshot): string {
  return `${snap.metadata.namespace ?? ""}/${snap.metadata.name ?? ""}`;
}

/** Carries out one target; never throws. */
async function execute(target: CleanupTarget, uid: string, client: CleanupRegistry, call: CallOptions, scrub: (s: string) => string): Promise<TargetResult> {
  const ref = target.ref;
  try {
    // Verify before delete: read the manifest first, delete it only when it carries this snapshot's UID.
    const found = await client.manifestAnnotations(target.repository, target.kind === "digest" ? target.digest : target.tag, call);
    if (found === undefined) return { ref, outcome: "not-found" };
    if (uid === "" || found.annotations[ANNOTATION_SNAPSHOT_UID] !== uid) return { ref, outcome: "foreign", digest: found.digest };
    const outcome = await client.deleteManifest(target.repository, found.digest, call);
    return outcome === "deleted" ? { ref, outcome: "deleted", digest: found.digest } : { ref, outcome: "not-found", digest: found.digest };
  } catch (err) {
    const message = scrub(err instanceof Error ? err.message : String(err));
    if (isRegistryError(err, "deletion-unsupported")) return { ref, outcome: "unsupported", message };
    return { ref, outcome: "error", message };
  }
}

const METRIC_OUTCOME: Record<TargetResult["outcome"], string> = {
  deleted: "deleted",
  "not-found": "not_found",
  foreign: "foreign",
  unsupported: "unsupported",
  error: "error",
  "not-attempted": "not_attempted",
};

/** Slack past the budget before a call that ignores its deadline is given up on (the hook must answer). */
const GRACE_MS = 500;

/** The call's result, or an error result once `hardDeadline` passes (the client honours deadlines; this is a backstop). */
async function guarded(t: CleanupTarget, call: Promise<TargetResult>, hardDeadline: number): Promise<TargetResult> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<TargetResult>((resolve) => {
    timer = setTimeout(() => {
      resolve({ ref: t.ref, outcome: "error", message: `registry call for ${t.ref} did not finish within the clean-up time budget` });
    }, Math.max(0, hardDeadline - Date.now()));
  });
  try {
    return await Promise.race([call, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs targets with bounded concurrency; a target not started before the deadline is not attempted. */
async function executeAll(
  targets: readonly CleanupTarget[],
  run: (t: CleanupTarget) => Promise<TargetResult>,
  deadline: number,
  concurrency: number,
): Promise<TargetResult[]> {
  const results: TargetResult[] = new Array<TargetResult>(targets.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      const t = targets[i];
      if (t === undefined) return;
      results[i] = Date.now() >= deadline - 50 ? { ref: t.ref, outcome: "not-attempted" } : await guarded(t, run(t), deadline + GRACE_MS);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, targets.length)) }, worker));
  return results;
}

/** Builds the CleanupRunner the hook server calls before the pure finalize. */
export async function createCleanupRunner(config: ControllerConfig, opts: CleanupRunnerOptions = {}): Promise<CleanupRun> {
  const dockerConfig = await loadCleanupCredentials(config, opts.log);
  const scrubber = secretsOf(dockerConfig);
  const scrub = (s: string): string => scrubber.scrub(s);
  const budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
  const concurrency = opts.concurrency ?? 4;
  const client = perRegistry<CleanupRegistry>(
    opts.clientFor ??
      controllerClient(config, dockerConfig, {
        timeoutMs: opts.attemptTimeoutMs ?? 2000,
        maxDelayMs: 500,
        ...(opts.retry !== undefined ? { retry: opts.retry } : {}),
        ...(opts.log !== undefined ? { log: opts.log.child({ component: "registry-cleanup" }) } : {}),
      }),
  );
  if (opts.kube === undefined) {
    opts.log?.warn(
      "no Kubernetes API access: finalize cannot re-read the SandboxSnapshot before deleting, so it trusts its caller (only manifests carrying the snapshot's UID annotation are ever deleted)",
    );
  }
  opts.log?.info(
    {
      dockerConfig: config.cleanupDockerConfig ?? "none (anonymous)",
      registries: dockerConfig === undefined ? [] : [...dockerConfig.auths.keys()],
      insecure: config.registryInsecure,
      budgetMs,
      deadlineSeconds: config.cleanupDeadlineSeconds,
    },
    "registry clean-up configured",
  );

  return async (req, now, log, metrics) => {
    const snap = req.parent;
    const who = snapshotRef(snap);
    let fold: CleanupFold | undefined;
    try {
      const plan = planCleanup(req, config, now);
      if (plan.action !== "attempt") {
        if (plan.action === "wait") log.debug({ snapshot: who, reason: plan.reason, resyncAfterSeconds: plan.resyncAfterSeconds }, "registry clean-up waits");
        return foldCleanup(req, config, now, plan);
      }
      for (const u of plan.unusable) log.warn({ snapshot: who, container: u.containerName, reason: scrub(u.reason) }, "cannot clean up this container's image");
      const deadline = Date.now() + budgetMs;
      const refused = plan.targets.length > 0 && opts.kube !== undefined ? await vouch(req, opts.kube) : undefined;
      if (refused !== undefined) log.warn({ snapshot: who, reason: refused }, "registry clean-up: the API server does not vouch for this finalize request; nothing deleted");
      const results =
        refused !== undefined
          ? plan.targets.map((t): TargetResult => ({ ref: t.ref, outcome: "error", message: `not deleted: ${refused}` }))
          : await executeAll(plan.targets, (t) => execute(t, plan.uid, client(t.registry), { deadline }, scrub), deadline, concurrency);
      for (const r of results) {
        metrics?.cleanupOutcomes.inc({ outcome: METRIC_OUTCOME[r.outcome] });
        const line = { snapshot: who, image: r.ref, outcome: r.outcome, ...("digest" in r && r.digest !== undefined ? { digest: r.digest } : {}) };
        if (r.outcome === "error" || r.outcome === "unsupported") log.warn({ ...line, error: r.message }, "registry clean-up: manifest not deleted");
        else if (r.outcome === "foreign") log.warn(line, "registry clean-up: the tag points at a manifest without this snapshot's UID annotation; left alone");
        else log.info(line, "registry clean-up");
      }
      fold = foldCleanup(req, config, now, plan, results);
    } catch (err) {
      // A bug, not a registry answer: keep the stored status and try again later; never lose the record.
      log.error({ snapshot: who, err: scrub(err instanceof Error ? err.message : String(err)) }, "registry clean-up failed unexpectedly");
      return { cleanup: snap.status?.cleanup, finished: false, resyncAfterSeconds: 30 };
    }
    if (fold === undefined) return undefined;
    const c = fold.cleanup ?? {};
    if (fold.abandoned !== undefined) {
      metrics?.cleanupAbandoned.inc({ reason: fold.abandoned });
      log.warn({ snapshot: who, reason: fold.abandoned, leftInRegistry: fold.outstanding, lastError: c.lastError }, "registry clean-up abandoned");
    } else if (c.state === "Done") {
      log.info({ snapshot: who, deletedDigests: c.deletedDigests ?? [], attempts: c.attempts }, "registry clean-up done");
    } else {
      log.info({ snapshot: who, outstanding: fold.outstanding, attempts: c.attempts, nextAttemptTime: c.nextAttemptTime, lastError: c.lastError }, "registry clean-up continues later");
    }
    return fold;
  };
}

/** Why the stored SandboxSnapshot does not vouch for the request (undefined = it does); an unreadable one never does. */
async function vouch(req: SyncRequest, kube: SnapshotWitness): Promise<string | undefined> {
  let stored: SandboxSnapshot | undefined;
  try {
    stored = await kube.getSandboxSnapshot(req.parent.metadata.namespace ?? "", req.parent.metadata.name ?? "");
  } catch (err) {
    return `could not re-read the SandboxSnapshot: ${describeKubeError(err)}`;
  }
  return witnessProblem(req, stored);
}

// Decided in the pure core with the other Events; re-exported for callers of this module.
export { cleanupEvent } from "../reconcile/events.js";
