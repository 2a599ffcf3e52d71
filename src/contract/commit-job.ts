// The commit Job ↔ committer contract (DESIGN.md "Commit Job ↔ committer interface"), in one place:
// the controller builds Jobs from it (src/jobs/committer-job.ts) and reads results with it
// (src/reconcile/commit-result.ts); the committer parses its invocation and writes its result with it
// (src/committer/). Pure: no I/O, no side effects.
//
//   arguments   <pod> <namespace> <container>:<imageRef>...          (OpenSandbox's form)
//               unpause <pod> <namespace> <container>...
//   environment ENV below; everything that is not pod, namespace or a target
//   annotations the manifest of each pushed image carries ANNOTATIONS below
//   result      one line of JSON at SNAPSHOT_RESULT_PATH, at most RESULT_LIMIT bytes:
//               full    {"containers":[{"name","image","digest","sizeBytes"}],"freezeMillis"}
//               compact {"digests":[…],"sizeBytes":[…],"freezeMillis"}  (order = argument order)
//               error   {"error":"…"}
//     The full form is written whenever it fits (OpenSandbox's field names); the compact form when
//     it does not (32 containers with long references). A result that still does not fit, or arrives
//     truncated, is recovered by the controller from the registry (the manifest at each tag carries
//     this snapshot's UID annotation), so the result is a hint, never the only witness.

export const GROUP = "sandbox.opensandbox.io";

/** Manifest annotations the committer writes; the controller trusts a manifest only with the UID. */
export const ANNOTATION_SNAPSHOT_UID = `${GROUP}/snapshot-uid`;
export const ANNOTATION_SNAPSHOT_NAME = `${GROUP}/snapshot-name`;
export const ANNOTATION_SNAPSHOT_NAMESPACE = `${GROUP}/snapshot-namespace`;

/** Environment variables of the commit and unpause Jobs, as the committer reads them. */
export const ENV = {
  CONTAINERD_SOCKET: "CONTAINERD_SOCKET",
  CONTAINERD_NAMESPACE: "CONTAINERD_NAMESPACE",
  CONTAINERD_ROOT: "CONTAINERD_ROOT",
  REGISTRY_INSECURE: "SNAPSHOT_REGISTRY_INSECURE",
  DOCKER_CONFIG: "DOCKER_CONFIG",
  COMPRESSION: "SNAPSHOT_COMPRESSION",
  MAX_FREEZE_SECONDS: "SNAPSHOT_MAX_FREEZE_SECONDS",
  SCRATCH_DIR: "SNAPSHOT_SCRATCH_DIR",
  SCRATCH_LIMIT_BYTES: "SNAPSHOT_SCRATCH_LIMIT_BYTES",
  RESULT_PATH: "SNAPSHOT_RESULT_PATH",
  SNAPSHOT_UID: "SNAPSHOT_UID",
  SNAPSHOT_NAME: "SNAPSHOT_NAME",
  SNAPSHOT_NAMESPACE: "SNAPSHOT_NAMESPACE",
  /** The source pod's UID: the committer refuses a different pod of the same name (optional). */
  SNAPSHOT_POD_UID: "SNAPSHOT_POD_UID",
  /** Test hook: GNU tar used to read upper directories (default `tar` on PATH). */
  TAR: "IMAGE_COMMITTER_TAR",
  /** Pre-copy passes before the freeze (0–5, default 3; 0 reads everything while frozen). */
  PRECOPY_PASSES: "SNAPSHOT_PRECOPY_PASSES",
} as const;

/** Every environment variable the committer reads. */
export const COMMITTER_ENV_VARS: readonly string[] = Object.values(ENV);

export const DEFAULT_CONTAINERD_NAMESPACE = "k8s.io";
export const DEFAULT_RESULT_PATH = "/dev/termination-log";
export const UNPAUSE = "unpause";

/** The kubelet keeps at most 4096 bytes of a termination message. */
export const RESULT_LIMIT = 4096;

export interface TargetArg {
  readonly container: string;
  /** `registry/repository:tag` */
  readonly image: string;
}

/** `<pod> <namespace> <container>:<imageRef>...` */
export function commitArgs(pod: string, namespace: string, targets: readonly TargetArg[]): string[] {
  return [pod, namespace, ...targets.map((t) => `${t.container}:${t.image}`)];
}

/** `unpause <pod> <namespace> <container>...` */
export function unpauseArgs(pod: string, namespace: string, containers: readonly string[]): string[] {
  return [UNPAUSE, pod, namespace, ...containers];
}

/** Splits `<container>:<imageRef>` at the first colon (container names have none); undefined without one. */
export function splitTargetArg(arg: string): TargetArg | undefined {
  const colon = arg.indexOf(":");
  if (colon === -1) return undefined;
  return { container: arg.slice(0, colon), image: arg.slice(colon + 1) };
}

// ---- the result -------------------------------------------------------------------------------

export interface ResultContainer {
  readonly name: string;
  readonly image: string;
  readonly digest: string;
  readonly sizeBytes: number;
}

export type CommitterResult = { readonly containers: readonly ResultContainer[]; readonly freezeMillis: number } | { readonly error: string };

/**
 * The result line, at most RESULT_LIMIT bytes when that is possible: the full form, else the compact
 * one (containers in argument order), else the compact form without sizes. Only a result with more
 * digests than fit (about 55 containers) exceeds the limit; the controller then recovers it from the
 * registry. An error message is shortened to fit.
 */
export function formatCommitterResult(r: CommitterResult): string {
  if ("error" in r) {
    let msg = r.error;
    let s = JSON.stringify({ error: msg });
    while (Buffer.byteLength(s) > RESULT_LIMIT) {
      msg = `${msg.slice(0, Math.max(0, msg.length - (Buffer.byteLength(s) - RESULT_LIMIT) - 16))}…`;
      s = JSON.stringify({ error: msg });
    }
    return s;
  }
  const full = JSON.stringify({ containers: r.containers, freezeMillis: r.freezeMillis });
  if (Buffer.byteLength(full) <= RESULT_LIMIT) return full;
  const digests = r.containers.map((c) => c.digest);
  const compact = JSON.stringify({ digests, sizeBytes: r.containers.map((c) => c.sizeBytes), freezeMillis: r.freezeMillis });
  if (Buffer.byteLength(compact) <= RESULT_LIMIT) return compact;
  return JSON.stringify({ digests, freezeMillis: r.freezeMillis });
}

/** What the controller learns from a result line; `containers` pairs digests with container names. */
export type ParsedResult =
  | { kind: "success"; containers: { name: string; digest: string; sizeBytes?: number }[]; freezeMillis?: number }
  | { kind: "error"; error: string }
  | { kind: "missing" }
  /** Not a result: truncated, the log tail of a crash (FallbackToLogsOnError), or malformed. */
  | { kind: "invalid"; message: string };

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_ERROR = 1000;

function short(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}

function size(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/**
 * Reads a result line. `containers` are the names in argument order (the status' order): the
 * compact form names its digests by position.
 */
export function parseCommitterResult(message: string | undefined, containers: readonly string[]): ParsedResult {
  if (message === undefined || message === "") return { kind: "missing" };
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    const cut = Buffer.byteLength(message) >= RESULT_LIMIT ? " (cut at the 4096-byte termination-message limit)" : "";
    return { kind: "invalid", message: `committer output is not a result${cut}: ${short(message, 300)}` };
  }
  if (typeof v !== "object" || v === null) return { kind: "invalid", message: "committer result is not an object" };
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string") return { kind: "error", error: short(o.error, MAX_ERROR) };
  const freeze = o.freezeMillis;
  const freezeMillis = typeof freeze === "number" && Number.isFinite(freeze) && freeze >= 0 ? Math.round(freeze) : undefined;
  const out: { name: string; digest: string; sizeBytes?: number }[] = [];
  if (Array.isArray(o.containers)) {
    for (const c of o.containers as unknown[]) {
      const e = (c ?? {}) as Record<string, unknown>;
      if (typeof e.name !== "string" || typeof e.digest !== "string" || !DIGEST.test(e.digest)) {
        return { kind: "invalid", message: "committer result has a container entry without name and sha256 digest" };
      }
      const s = size(e.sizeBytes);
      out.push({ name: e.name, digest: e.digest, ...(s !== undefined ? { sizeBytes: s } : {}) });
    }
  } else if (Array.isArray(o.digests)) {
    const digests = o.digests as unknown[];
    if (digests.length !== containers.length) {
      return { kind: "invalid", message: `committer result has ${digests.length} digest(s) for ${containers.length} container(s)` };
    }
    const sizes = Array.isArray(o.sizeBytes) ? (o.sizeBytes as unknown[]) : [];
    for (const [i, d] of digests.entries()) {
      if (typeof d !== "string" || !DIGEST.test(d)) return { kind: "invalid", message: `committer result digest ${i} is not a sha256 digest` };
      const s = size(sizes[i]);
      out.push({ name: containers[i] ?? "", digest: d, ...(s !== undefined ? { sizeBytes: s } : {}) });
    }
  } else {
    return { kind: "invalid", message: "committer result has neither containers nor digests" };
  }
  return freezeMillis !== undefined ? { kind: "success", containers: out, freezeMillis } : { kind: "success", containers: out };
}
