// The committer's invocation: arguments name the pod, its namespace and the containers (with the
// image reference each is pushed to); everything else comes from the environment (DESIGN.md
// "Commit Job ↔ committer interface"). Parsing is a pure function of (argv, env) that never throws:
// it returns the invocation or a UsageError naming the argument or variable at fault.
import { parseBytes as parseQuantity } from "../config/quantity.js";
import { ENV } from "../contract/commit-job.js";
import { parseImageReference, ReferenceError, type ImageReference } from "../registry/reference.js";
import type { Compression } from "./compress.js";

export class UsageError extends Error {
  constructor(
    /** The argument (`argv[2]`, `<pod>`…) or environment variable at fault. */
    readonly where: string,
    reason: string,
  ) {
    super(`${where}: ${reason}`);
    this.name = "UsageError";
  }
}

export const USAGE = [
  "usage: image-committer <pod> <namespace> <container>:<imageRef>...",
  "       image-committer unpause <pod> <namespace> <container>...",
].join("\n");

export interface CommitterSettings {
  readonly containerdSocket: string;
  readonly containerdNamespace: string;
  readonly containerdRoot: string;
  readonly registryInsecure: boolean;
  /** Directory holding config.json; undefined = anonymous. */
  readonly dockerConfig: string | undefined;
  readonly compression: Compression;
  readonly maxFreezeSeconds: number;
  readonly scratchDir: string;
  readonly scratchLimitBytes: number;
  readonly resultPath: string;
  readonly snapshotUid: string | undefined;
  readonly snapshotName: string | undefined;
  readonly snapshotNamespace: string | undefined;
  /** The source pod's UID (SNAPSHOT_POD_UID, optional): a different pod of the same name is refused. */
  readonly podUid: string | undefined;
  /** GNU tar used to read upper directories (IMAGE_COMMITTER_TAR, default `tar` on PATH). */
  readonly tarCommand: string;
  /** Pre-copy passes before the freeze (SNAPSHOT_PRECOPY_PASSES, 0–5, default 3; 0 reads everything frozen). */
  readonly precopyPasses: number;
}

export interface CommitTarget {
  readonly container: string;
  /** The reference as given, e.g. `registry:5000/snapshots/pod-main:snap-gen3`. */
  readonly image: string;
  readonly ref: ImageReference;
}

export type Invocation =
  | {
      readonly mode: "commit";
      readonly pod: string;
      readonly namespace: string;
      readonly targets: readonly CommitTarget[];
      readonly settings: CommitterSettings;
    }
  | {
      readonly mode: "unpause";
      readonly pod: string;
      readonly namespace: string;
      readonly containers: readonly string[];
      readonly settings: CommitterSettings;
    };

export type ParseResult = { readonly ok: true; readonly value: Invocation } | { readonly ok: false; readonly error: UsageError };

type Env = Readonly<Record<string, string | undefined>>;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const CONTAINERD_NS = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
const MAX_FREEZE_SECONDS = 3600;
/** No configured limit: the file system's free space is the only bound. */
export const UNLIMITED = Number.MAX_SAFE_INTEGER;

function show(s: string): string {
  const j = JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
  return j;
}

function label(where: string, v: string, max: number, kind: string): string {
  if (v === "") throw new UsageError(where, `must not be empty (a ${kind})`);
  if (v.length > max || !DNS_LABEL.test(v)) {
    throw new UsageError(where, `${show(v)} is not a valid ${kind} (lowercase letters, digits and '-', at most ${max} characters)`);
  }
  return v;
}

function podName(where: string, v: string): string {
  if (v === "") throw new UsageError(where, "must not be empty (a pod name)");
  if (v.length > 253 || !DNS_SUBDOMAIN.test(v)) {
    throw new UsageError(where, `${show(v)} is not a valid pod name (a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253 characters)`);
  }
  return v;
}

function envString(env: Env, name: string, fallback: string): string {
  const v = env[name];
  return v === undefined || v === "" ? fallback : v;
}

function envPath(env: Env, name: string, fallback: string): string {
  const v = envString(env, name, fallback);
  if (!v.startsWith("/") || v.includes("\0")) throw new UsageError(name, `${show(v)} is not an absolute path`);
  return v;
}

function envOptional(env: Env, name: string, max = 253): string | undefined {
  const v = env[name];
  if (v === undefined || v === "") return undefined;
  if (v.length > max) throw new UsageError(name, `longer than ${max} characters`);
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) throw new UsageError(name, "contains control characters");
  }
  return v;
}

const POD_UID = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

function podUid(env: Env): string | undefined {
  const v = envOptional(env, ENV.SNAPSHOT_POD_UID);
  if (v !== undefined && !POD_UID.test(v)) {
    throw new UsageError(ENV.SNAPSHOT_POD_UID, `${show(v)} is not a pod UID (e.g. 3f0c9a4e-2b7d-4c1e-9a55-0d6b8e1f2a3c)`);
  }
  return v;
}

/** Every environment variable the committer reads (the commit Job contract's list). */
export { COMMITTER_ENV_VARS } from "../contract/commit-job.js";

/** Bytes: a plain integer, or a Kubernetes quantity such as `10Gi` or `500M`. */
export function parseBytes(v: string): number | undefined {
  return parseQuantity(v);
}

function settingsFrom(env: Env): CommitterSettings {
  const socket = envString(env, "CONTAINERD_SOCKET", "/run/containerd/containerd.sock");
  if (!(socket.startsWith("/") || socket.startsWith("unix:///")) || socket.includes("\0")) {
    throw new UsageError("CONTAINERD_SOCKET", `${show(socket)} is not a socket path (e.g. /run/containerd/containerd.sock)`);
  }
  const ns = envString(env, "CONTAINERD_NAMESPACE", "k8s.io");
  if (ns.length > 76 || !CONTAINERD_NS.test(ns)) {
    throw new UsageError("CONTAINERD_NAMESPACE", `${show(ns)} is not a containerd namespace (e.g. k8s.io)`);
  }
  const insecureRaw = envString(env, "SNAPSHOT_REGISTRY_INSECURE", "false");
  if (insecureRaw !== "true" && insecureRaw !== "false") {
    throw new UsageError("SNAPSHOT_REGISTRY_INSECURE", `${show(insecureRaw)} must be true or false`);
  }
  const compression = envString(env, "SNAPSHOT_COMPRESSION", "gzip");
  if (compression !== "gzip" && compression !== "zstd") {
    throw new UsageError("SNAPSHOT_COMPRESSION", `${show(compression)} must be gzip or zstd`);
  }
  const freezeRaw = envString(env, "SNAPSHOT_MAX_FREEZE_SECONDS", "60");
  const freeze = /^[0-9]+(\.[0-9]+)?$/.test(freezeRaw) ? Number(freezeRaw) : NaN;
  if (!(freeze > 0 && freeze <= MAX_FREEZE_SECONDS)) {
    throw new UsageError("SNAPSHOT_MAX_FREEZE_SECONDS", `${show(freezeRaw)} must be a number of seconds > 0 and <= ${MAX_FREEZE_SECONDS}`);
  }
  const limitRaw = env.SNAPSHOT_SCRATCH_LIMIT_BYTES;
  let limit = UNLIMITED;
  if (limitRaw !== undefined && limitRaw !== "") {
    const n = parseBytes(limitRaw);
    if (n === undefined) {
      throw new UsageError("SNAPSHOT_SCRATCH_LIMIT_BYTES", `${show(limitRaw)} must be a byte count (e.g. 10737418240 or 10Gi)`);
    }
    limit = n;
  }
  const passesRaw = env.SNAPSHOT_PRECOPY_PASSES;
  const precopyPasses = passesRaw === undefined || passesRaw === "" ? 3 : Number(passesRaw);
  if (!Number.isInteger(precopyPasses) || precopyPasses < 0 || precopyPasses > 5 || !/^\d$/.test(passesRaw ?? "3")) {
    throw new UsageError("SNAPSHOT_PRECOPY_PASSES", `${show(passesRaw ?? "")} must be a whole number from 0 to 5 (0: no pre-copy, everything is read while frozen)`);
  }
  const dockerConfig = env.DOCKER_CONFIG;
  if (dockerConfig !== undefined && dockerConfig !== "" && (!dockerConfig.startsWith("/") || dockerConfig.includes("\0"))) {
    throw new UsageError("DOCKER_CONFIG", `${show(dockerConfig)} is not an absolute path of a directory holding config.json`);
  }
  return {
    containerdSocket: socket,
    containerdNamespace: ns,
    containerdRoot: envPath(env, "CONTAINERD_ROOT", "/var/lib/containerd"),
    registryInsecure: insecureRaw === "true",
    dockerConfig: dockerConfig === undefined || dockerConfig === "" ? undefined : dockerConfig,
    compression,
    maxFreezeSeconds: freeze,
    scratchDir: envPath(env, "SNAPSHOT_SCRATCH_DIR", "/tmp"),
    scratchLimitBytes: limit,
    resultPath: envPath(env, "SNAPSHOT_RESULT_PATH", "/dev/termination-log"),
    snapshotUid: envOptional(env, "SNAPSHOT_UID"),
    snapshotName: envOptional(env, "SNAPSHOT_NAME"),
    snapshotNamespace: envOptional(env, "SNAPSHOT_NAMESPACE"),
    podUid: podUid(env),
    tarCommand: envOptional(env, "IMAGE_COMMITTER_TAR", 4096) ?? "tar",
    precopyPasses,
  };
}

function parse(argv: readonly string[], env: Env): Invocation {
  const args = [...argv];
  const unpause = args[0] === "unpause";
  if (unpause) args.shift();
  const at = (i: number): string => `argument ${i + (unpause ? 2 : 1)}`;
  if (args.length < 3) {
    const missing = args.length === 0 ? "<pod>" : args.length === 1 ? "<namespace>" : unpause ? "<container>" : "<container>:<imageRef>";
    throw new UsageError(missing, `missing\n${USAGE}`);
  }
  const pod = podName(`${at(0)} <pod>`, args[0] ?? "");
  const namespace = label(`${at(1)} <namespace>`, args[1] ?? "", 63, "namespace name");
  const seen = new Set<string>();
  const unique = (where: string, c: string): void => {
    if (seen.has(c)) throw new UsageError(where, `container ${c} is named twice`);
    seen.add(c);
  };
  if (unpause) {
    const containers = args.slice(2).map((a, i) => {
      const where = `${at(i + 2)} <container>`;
      // the commit form `container:imageRef` is accepted too, so the same list can be passed
      const c = label(where, a.split(":")[0] ?? "", 63, "container name");
      unique(where, c);
      return c;
    });
    return { mode: "unpause", pod, namespace, containers, settings: settingsFrom(env) };
  }
  const targets = args.slice(2).map((a, i): CommitTarget => {
    const where = `${at(i + 2)} <container>:<imageRef>`;
    const colon = a.indexOf(":");
    if (colon === -1) throw new UsageError(where, `${show(a)} must be <container>:<imageRef>`);
    const container = label(where, a.slice(0, colon), 63, "container name");
    unique(where, container);
    const image = a.slice(colon + 1);
    let ref: ImageReference;
    try {
      ref = parseImageReference(image);
    } catch (e) {
      throw new UsageError(where, e instanceof ReferenceError ? e.message : `invalid image reference ${show(image)}`);
    }
    if (ref.digest !== undefined) {
      throw new UsageError(where, `${show(image)} names a digest; a snapshot is pushed to a tag (registry/repository:tag)`);
    }
    return { container, image, ref: ref.tag === undefined ? { ...ref, tag: "latest" } : ref };
  });
  return { mode: "commit", pod, namespace, targets, settings: settingsFrom(env) };
}

/** Parses the command line (without `node` and the script) and the environment. Never throws. */
export function parseInvocation(argv: readonly string[], env: Env): ParseResult {
  try {
    return { ok: true, value: parse(argv, env) };
  } catch (e) {
    if (e instanceof UsageError) return { ok: false, error: e };
    return { ok: false, error: new UsageError("arguments", e instanceof Error ? e.message : String(e)) };
  }
}
