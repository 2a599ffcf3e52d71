// Controller-wide settings, parsed once at start-up into a frozen object. Every setting comes from an
// environment variable (DESIGN.md "Configuration"); `--flag=value` arguments mirror them
// (`--snapshot-registry=...` sets SNAPSHOT_REGISTRY). A wrong value is a ConfigError naming the setting.

import { DEFAULT_AGENT_SANDBOX_VERSION } from "../reconcile/agent-sandbox.js";
import { parseBytes } from "./quantity.js";

export class ConfigError extends Error {
  constructor(
    readonly setting: string,
    reason: string,
  ) {
    super(`invalid setting ${setting}: ${reason}`);
    this.name = "ConfigError";
  }
}

export type Compression = "gzip" | "zstd";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export interface ControllerConfig {
  readonly hookListen: ListenAddress;
  readonly metricsListen: ListenAddress;
  /** Registry host and path prefix, e.g. `registry.example.com/snapshots`. */
  readonly registry: string;
  readonly repositoryTemplate: string;
  /** Repositories may be shared across namespaces (a template without {namespace}); explicit opt-in. */
  readonly sharedRepositories: boolean;
  readonly registryInsecure: boolean;
  /** Name of a dockerconfigjson Secret in each snapshot namespace; undefined = none. */
  readonly pushSecret: string | undefined;
  /** Path of the docker config the hook server deletes images with; undefined = anonymous. */
  readonly cleanupDockerConfig: string | undefined;
  readonly committerImage: string;
  readonly committerImagePullSecrets: readonly string[];
  readonly commitJobDeadlineSeconds: number;
  readonly commitJobPriorityClass: string | undefined;
  readonly commitJobCpu: string;
  readonly commitJobMemory: string;
  readonly containerdSocket: string;
  readonly containerdRoot: string;
  readonly compression: Compression;
  readonly maxFreezeSeconds: number;
  readonly scratchLimit: string;
  readonly scratchLimitBytes: number;
  readonly sourceWaitSeconds: number;
  readonly cleanupDeadlineSeconds: number;
  /** Version of agents.x-k8s.io Sandboxes to relate and read (v1beta1 from agent-sandbox v0.5.0; v1alpha1 before). */
  readonly agentSandboxVersion: AgentSandboxVersion;
  /** How often a Succeed snapshot's images are checked in the registry; 0 = never. */
  readonly imageRecheckSeconds: number;
  readonly logLevel: LogLevel;
}

export type AgentSandboxVersion = "v1beta1" | "v1alpha1";

export const DEFAULT_COMMITTER_IMAGE = "ghcr.io/sandbox-snapshot/image-committer:0.1.0";

type Env = Readonly<Record<string, string | undefined>>;

const DEFAULTS: Readonly<Record<string, string>> = {
  HOOK_LISTEN_ADDRESS: "0.0.0.0:8080",
  METRICS_LISTEN_ADDRESS: "0.0.0.0:9090",
  SNAPSHOT_REGISTRY: "localhost:5000/snapshots",
  SNAPSHOT_REPOSITORY_TEMPLATE: "{registry}/{namespace}/{source}/{container}",
  SNAPSHOT_SHARED_REPOSITORIES: "false",
  SNAPSHOT_REGISTRY_INSECURE: "false",
  SNAPSHOT_PUSH_SECRET: "",
  REGISTRY_CLEANUP_DOCKER_CONFIG: "",
  COMMITTER_IMAGE: DEFAULT_COMMITTER_IMAGE,
  COMMITTER_IMAGE_PULL_SECRETS: "",
  COMMIT_JOB_DEADLINE_SECONDS: "600",
  COMMIT_JOB_PRIORITY_CLASS: "",
  COMMIT_JOB_CPU: "500m",
  COMMIT_JOB_MEMORY: "512Mi",
  CONTAINERD_SOCKET: "/run/containerd/containerd.sock",
  CONTAINERD_ROOT: "/var/lib/containerd",
  SNAPSHOT_COMPRESSION: "gzip",
  SNAPSHOT_MAX_FREEZE_SECONDS: "60",
  SNAPSHOT_SCRATCH_LIMIT: "10Gi",
  SOURCE_WAIT_SECONDS: "300",
  CLEANUP_DEADLINE_SECONDS: "3600",
  AGENT_SANDBOX_API_VERSION: DEFAULT_AGENT_SANDBOX_VERSION,
  IMAGE_RECHECK_SECONDS: "86400",
  LOG_LEVEL: "info",
};

/** The environment variable names this controller reads. */
export const SETTINGS: readonly string[] = Object.keys(DEFAULTS);

/** `--snapshot-registry=x` or `--snapshot-registry x` → `{SNAPSHOT_REGISTRY: "x"}`. */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (!arg.startsWith("--")) throw new ConfigError(arg, "unexpected argument; settings are flags like --log-level=debug");
    const eq = arg.indexOf("=");
    const name = (eq >= 0 ? arg.slice(2, eq) : arg.slice(2)).toUpperCase().replaceAll("-", "_");
    if (!(name in DEFAULTS)) throw new ConfigError(arg, `unknown flag; known settings: ${SETTINGS.join(", ")}`);
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined) throw new ConfigError(name, `flag ${arg} needs a value`);
    out[name] = value;
  }
  return out;
}

function listenAddress(setting: string, value: string): ListenAddress {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$/.exec(value);
  if (!m) throw new ConfigError(setting, `"${value}" is not host:port (for example 0.0.0.0:8080)`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(setting, `port ${port} is out of range 0-65535`);
  const host = (m[1] ?? "").replace(/^\[|\]$/g, "");
  return { host: host === "" ? "0.0.0.0" : host, port };
}

function bool(setting: string, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new ConfigError(setting, `"${value}" must be true or false`);
}

function nonNegativeInt(setting: string, value: string, max = 31_536_000): number {
  if (!/^\d+$/.test(value)) throw new ConfigError(setting, `"${value}" must be a whole number of seconds (0 = off)`);
  const n = Number(value);
  if (n > max) throw new ConfigError(setting, `${n} must be between 0 and ${max}`);
  return n;
}

function positiveInt(setting: string, value: string, max = 31_536_000): number {
  if (!/^\d+$/.test(value)) throw new ConfigError(setting, `"${value}" must be a whole number of seconds`);
  const n = Number(value);
  if (n < 1 || n > max) throw new ConfigError(setting, `${n} must be between 1 and ${max}`);
  return n;
}

/** Parses a Kubernetes byte quantity (`10Gi`, `500M`, `1073741824`). */
export function parseByteQuantity(setting: string, value: string): number {
  const bytes = parseBytes(value, true);
  if (bytes === undefined) {
    throw new ConfigError(setting, `"${value}" is not a byte quantity (for example 10Gi, 512Mi, 500M)`);
  }
  if (bytes < 1) throw new ConfigError(setting, `"${value}" must be more than zero bytes`);
  return bytes;
}

function cpuQuantity(setting: string, value: string): string {
  if (!/^(\d+(\.\d+)?|\d+m)$/.test(value)) {
    throw new ConfigError(setting, `"${value}" is not a CPU quantity (for example 500m or 1)`);
  }
  return value;
}

function memoryQuantity(setting: string, value: string): string {
  parseByteQuantity(setting, value);
  return value;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function optionalName(setting: string, value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 253 || !DNS_SUBDOMAIN.test(value)) {
    throw new ConfigError(setting, `"${value}" is not a valid Kubernetes object name`);
  }
  return value;
}

function nameList(setting: string, value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => {
      if (!DNS_SUBDOMAIN.test(s)) throw new ConfigError(setting, `"${s}" is not a valid Secret name`);
      return s;
    });
}

// Registry host[:port] followed by lowercase path components (OCI distribution name grammar).
const REGISTRY_PREFIX =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::\d{1,5})?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

function registry(setting: string, value: string): string {
  const v = value.replace(/\/+$/, "");
  if (/^[a-z]+:\/\//.test(v)) {
    throw new ConfigError(setting, `"${value}" must not carry a scheme; use SNAPSHOT_REGISTRY_INSECURE for plain HTTP`);
  }
  if (!REGISTRY_PREFIX.test(v)) {
    throw new ConfigError(setting, `"${value}" is not a registry host[:port][/path] (for example registry.example.com/snapshots)`);
  }
  return v;
}

const TEMPLATE_VARS = new Set(["registry", "namespace", "source", "container"]);

function repositoryTemplate(setting: string, value: string): string {
  const vars = [...value.matchAll(/\{([^}]*)\}/g)].map((m) => m[1] ?? "");
  for (const v of vars) {
    if (!TEMPLATE_VARS.has(v)) {
      throw new ConfigError(setting, `unknown placeholder {${v}}; allowed: {registry}, {namespace}, {source}, {container}`);
    }
  }
  if (!value.startsWith("{registry}/")) throw new ConfigError(setting, `"${value}" must start with {registry}/`);
  if (!vars.includes("container")) {
    throw new ConfigError(setting, `"${value}" must contain {container}, or containers of one pod would overwrite each other`);
  }
  if (!vars.includes("source")) {
    throw new ConfigError(setting, `"${value}" must contain {source}, or snapshots of different sandboxes would share a tag space`);
  }
  if (/[A-Z:@\s]/.test(value.replace(/\{[a-z]+\}/g, ""))) {
    throw new ConfigError(setting, `"${value}" may contain only lowercase repository characters besides placeholders`);
  }
  return value;
}

function image(setting: string, value: string): string {
  if (value === "" || /\s/.test(value) || !/^[a-z0-9]/.test(value)) {
    throw new ConfigError(setting, `"${value}" is not an image reference`);
  }
  return value;
}

function oneOf<T extends string>(setting: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ConfigError(setting, `"${value}" must be one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function absolutePath(setting: string, value: string): string {
  if (!value.startsWith("/")) throw new ConfigError(setting, `"${value}" must be an absolute path`);
  return value;
}

/** Parses and validates every setting. Throws the first ConfigError. */
export function loadConfig(env: Env, argv: readonly string[] = []): ControllerConfig {
  const merged: Record<string, string> = { ...DEFAULTS };
  for (const key of SETTINGS) {
    const v = env[key];
    if (v !== undefined) merged[key] = v.trim();
  }
  Object.assign(merged, flagsToEnv(argv));
  const get = (k: string): string => merged[k] ?? "";

  const scratchLimit = get("SNAPSHOT_SCRATCH_LIMIT");
  const cleanupDockerConfig = get("REGISTRY_CLEANUP_DOCKER_CONFIG");
  const cfg: ControllerConfig = {
    hookListen: listenAddress("HOOK_LISTEN_ADDRESS", get("HOOK_LISTEN_ADDRESS")),
    metricsListen: listenAddress("METRICS_LISTEN_ADDRESS", get("METRICS_LISTEN_ADDRESS")),
    registry: registry("SNAPSHOT_REGISTRY", get("SNAPSHOT_REGISTRY")),
    repositoryTemplate: repositoryTemplate("SNAPSHOT_REPOSITORY_TEMPLATE", get("SNAPSHOT_REPOSITORY_TEMPLATE")),
    sharedRepositories: bool("SNAPSHOT_SHARED_REPOSITORIES", get("SNAPSHOT_SHARED_REPOSITORIES")),
    registryInsecure: bool("SNAPSHOT_REGISTRY_INSECURE", get("SNAPSHOT_REGISTRY_INSECURE")),
    pushSecret: optionalName("SNAPSHOT_PUSH_SECRET", get("SNAPSHOT_PUSH_SECRET")),
    cleanupDockerConfig:
      cleanupDockerConfig === "" ? undefined : absolutePath("REGISTRY_CLEANUP_DOCKER_CONFIG", cleanupDockerConfig),
    committerImage: image("COMMITTER_IMAGE", get("COMMITTER_IMAGE")),
    committerImagePullSecrets: nameList("COMMITTER_IMAGE_PULL_SECRETS", get("COMMITTER_IMAGE_PULL_SECRETS")),
    commitJobDeadlineSeconds: positiveInt("COMMIT_JOB_DEADLINE_SECONDS", get("COMMIT_JOB_DEADLINE_SECONDS"), 86_400),
    commitJobPriorityClass: optionalName("COMMIT_JOB_PRIORITY_CLASS", get("COMMIT_JOB_PRIORITY_CLASS")),
    commitJobCpu: cpuQuantity("COMMIT_JOB_CPU", get("COMMIT_JOB_CPU")),
    commitJobMemory: memoryQuantity("COMMIT_JOB_MEMORY", get("COMMIT_JOB_MEMORY")),
    containerdSocket: absolutePath("CONTAINERD_SOCKET", get("CONTAINERD_SOCKET")),
    containerdRoot: absolutePath("CONTAINERD_ROOT", get("CONTAINERD_ROOT")),
    compression: oneOf("SNAPSHOT_COMPRESSION", get("SNAPSHOT_COMPRESSION"), ["gzip", "zstd"] as const),
    maxFreezeSeconds: positiveInt("SNAPSHOT_MAX_FREEZE_SECONDS", get("SNAPSHOT_MAX_FREEZE_SECONDS"), 3600),
    scratchLimit,
    scratchLimitBytes: parseByteQuantity("SNAPSHOT_SCRATCH_LIMIT", scratchLimit),
    sourceWaitSeconds: positiveInt("SOURCE_WAIT_SECONDS", get("SOURCE_WAIT_SECONDS")),
    cleanupDeadlineSeconds: positiveInt("CLEANUP_DEADLINE_SECONDS", get("CLEANUP_DEADLINE_SECONDS")),
    agentSandboxVersion: oneOf("AGENT_SANDBOX_API_VERSION", get("AGENT_SANDBOX_API_VERSION"), ["v1beta1", "v1alpha1"] as const),
    imageRecheckSeconds: nonNegativeInt("IMAGE_RECHECK_SECONDS", get("IMAGE_RECHECK_SECONDS")),
    logLevel: oneOf("LOG_LEVEL", get("LOG_LEVEL"), ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const),
  };
  if (!/\{namespace\}/.test(cfg.repositoryTemplate) && !cfg.sharedRepositories) {
    // Without the namespace two tenants' snapshots of equally named sources share one image reference:
    // one overwrites the other's tag, and a resume runs the other tenant's filesystem.
    throw new ConfigError(
      "SNAPSHOT_REPOSITORY_TEMPLATE",
      `"${cfg.repositoryTemplate}" has no {namespace}, so snapshots in different namespaces would share repositories and tags; add {namespace} (default {registry}/{namespace}/{source}/{container}) or set SNAPSHOT_SHARED_REPOSITORIES=true if every namespace is one tenant`,
    );
  }
  if (cfg.maxFreezeSeconds >= cfg.commitJobDeadlineSeconds) {
    throw new ConfigError(
      "SNAPSHOT_MAX_FREEZE_SECONDS",
      `${cfg.maxFreezeSeconds} must be below COMMIT_JOB_DEADLINE_SECONDS (${cfg.commitJobDeadlineSeconds}), or the Job could be killed while the sandbox is frozen`,
    );
  }
  return Object.freeze({ ...cfg, committerImagePullSecrets: Object.freeze([...cfg.committerImagePullSecrets]) });
}

export { DNS_LABEL, DNS_SUBDOMAIN };
