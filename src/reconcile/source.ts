// Which pod is the snapshot's source (DESIGN.md "Compatibility facts"): for a BatchSandbox, the pods
// named in its alloc-status annotation, else pods with its label, else `<name>-0`; the first Running
// one wins. For spec.podName, that pod. For spec.sandboxRef, the platform's rules (./agent-sandbox.ts).
import type { AgentSandbox, BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { agentSandboxSourceName, resolveAgentSandboxSource } from "./agent-sandbox.js";
import { ANNOTATION_ALLOC_STATUS, LABEL_BATCH_SANDBOX } from "./names.js";
import { findByName } from "./observe.js";

export interface AllocStatus {
  pods: string[];
  /** Set when the annotation exists but cannot be read; names the field. */
  error?: string;
}

/** Parses `sandbox.opensandbox.io/alloc-status` (`{"pods":["..."]}`). */
export function allocStatus(bs: BatchSandbox | undefined): AllocStatus {
  const raw = bs?.metadata?.annotations?.[ANNOTATION_ALLOC_STATUS];
  if (raw === undefined || raw === "") return { pods: [] };
  const field = `BatchSandbox ${bs?.metadata?.name ?? ""} metadata.annotations["${ANNOTATION_ALLOC_STATUS}"]`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { pods: [], error: `${field} is not valid JSON (expected {"pods":["<pod name>"]})` };
  }
  const pods = (parsed as { pods?: unknown } | null)?.pods;
  if (pods === undefined || pods === null) return { pods: [] };
  if (!Array.isArray(pods) || !pods.every((p): p is string => typeof p === "string")) {
    return { pods: [], error: `${field}.pods must be a list of pod names` };
  }
  return { pods: pods.filter((p) => p !== "") };
}

/** Pod names to look for, in the order they win. */
export function candidatePodNames(spec: SandboxSnapshot["spec"], bs: BatchSandbox | undefined): string[] {
  if (spec.podName !== undefined) return [spec.podName];
  const name = spec.sandboxName ?? "";
  return [...allocStatus(bs).pods, `${name}-0`];
}

export type SourceResolution =
  | { found: true; pod: Pod; nodeName: string }
  | { found: false; reason: "SourceNotFound" | "SourceNotRunning" | "SourceSuspended" | "SourceNotOwned"; message: string };

export function isRunningOnNode(pod: Pod | undefined): boolean {
  return pod?.status?.phase === "Running" && (pod.spec?.nodeName ?? "") !== "" && !pod.metadata?.deletionTimestamp;
}

export function resolveSource(
  snap: SandboxSnapshot,
  pods: readonly Pod[],
  batchSandboxes: readonly BatchSandbox[],
  agentSandboxes: readonly AgentSandbox[] = [],
): SourceResolution {
  const spec = snap.spec;
  const agentSandbox = agentSandboxSourceName(snap);
  if (agentSandbox !== undefined) return resolveAgentSandboxSource(agentSandbox, pods, agentSandboxes);
  if (spec.podName !== undefined) {
    const pod = findByName(pods, spec.podName);
    if (pod && isRunningOnNode(pod)) return { found: true, pod, nodeName: pod.spec?.nodeName ?? "" };
    if (!pod) return { found: false, reason: "SourceNotFound", message: `Pod ${spec.podName} (spec.podName) does not exist` };
    return {
      found: false,
      reason: "SourceNotRunning",
      message: `Pod ${spec.podName} (spec.podName) is ${pod.status?.phase ?? "not yet scheduled"}, not Running on a node`,
    };
  }
  const name = spec.sandboxName ?? "";
  const bs = findByName(batchSandboxes, name);
  const alloc = allocStatus(bs);
  const byAlloc = alloc.pods.map((n) => findByName(pods, n));
  const byLabel = pods
    .filter((p) => p.metadata?.labels?.[LABEL_BATCH_SANDBOX] === name)
    .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""));
  const ordered = [...byAlloc, ...byLabel, findByName(pods, `${name}-0`)];
  const running = ordered.find((p): p is Pod => isRunningOnNode(p));
  if (running) return { found: true, pod: running, nodeName: running.spec?.nodeName ?? "" };
  const notes: string[] = [];
  if (alloc.error !== undefined) notes.push(alloc.error);
  if (!bs) {
    return {
      found: false,
      reason: "SourceNotFound",
      message: [`BatchSandbox ${name} (spec.sandboxName) does not exist`, ...notes].join("; "),
    };
  }
  const seen = ordered.filter((p): p is Pod => p !== undefined);
  return {
    found: false,
    reason: seen.length === 0 ? "SourceNotFound" : "SourceNotRunning",
    message: [
      seen.length === 0
        ? `BatchSandbox ${name} (spec.sandboxName) has no pod yet`
        : `no pod of BatchSandbox ${name} (spec.sandboxName) is Running (${seen
            .map((p) => `${p.metadata?.name ?? ""}: ${p.status?.phase ?? "Unknown"}`)
            .join(", ")})`,
      ...notes,
    ].join("; "),
  };
}
