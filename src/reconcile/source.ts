// Which pod is the snapshot's source (DESIGN.md "Compatibility facts"): for a BatchSandbox, the pods
// named in its alloc-status annotation, else pods with its label, else `<name>-0`; the first Running
// one wins. For spec.podName, that pod. For spec.sandboxRef, the platform's rules (./agent-sandbox.ts).
// The alloc-status names are the BatchSandbox's own word; a pod found by label or as `<name>-0` counts
// only when that BatchSandbox (its UID) controls it, so a pod anyone plants with the label or the name
// is ignored.
import type { AgentSandbox, BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { agentSandboxSourceName, resolveAgentSandboxSource } from "./agent-sandbox.js";
import { ANNOTATION_ALLOC_STATUS, BATCH_SANDBOX_KIND, LABEL_BATCH_SANDBOX } from "./names.js";
import { findByName, isControlledBy, type Ignored } from "./observe.js";

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

/** At most this many alloc-status names are related or looked up (a BatchSandbox allocates one pod per replica). */
export const MAX_CANDIDATE_NAMES = 16;

/** Pod names to look for, in the order they win. */
export function candidatePodNames(spec: SandboxSnapshot["spec"], bs: BatchSandbox | undefined): string[] {
  if (spec.podName !== undefined) return [spec.podName];
  const name = spec.sandboxName ?? "";
  return [...new Set([...allocStatus(bs).pods.slice(0, MAX_CANDIDATE_NAMES), `${name}-0`])];
}

export type SourceResolution = (
  | { found: true; pod: Pod; nodeName: string }
  | { found: false; reason: "SourceNotFound" | "SourceNotRunning" | "SourceSuspended" | "SourceNotOwned"; message: string }
) & { ignored?: Ignored[] };

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
    if (pod && isRunningOnNode(pod)) return { found: true, pod, nodeName: pod.spec?.nodeName ?? "", ignored: [] };
    if (!pod) return { found: false, reason: "SourceNotFound", message: `Pod ${spec.podName} (spec.podName) does not exist`, ignored: [] };
    return {
      ignored: [],
      found: false,
      reason: "SourceNotRunning",
      message: `Pod ${spec.podName} (spec.podName) is ${pod.status?.phase ?? "not yet scheduled"}, not Running on a node`,
    };
  }
  const name = spec.sandboxName ?? "";
  const bs = findByName(batchSandboxes, name);
  const alloc = allocStatus(bs);
  const allocNames = alloc.pods.slice(0, MAX_CANDIDATE_NAMES);
  const byAlloc = allocNames.map((n) => findByName(pods, n));
  // Found by label or by the `<name>-0` convention: only what this BatchSandbox controls.
  const ignored: Ignored[] = [];
  const bsUid = bs?.metadata?.uid;
  const owned = (p: Pod | undefined): p is Pod => {
    if (p === undefined) return false;
    if (allocNames.includes(p.metadata?.name ?? "")) return false; // already in its alloc-status place
    if (isControlledBy(p, BATCH_SANDBOX_KIND, bsUid)) return true;
    ignored.push({
      kind: "Pod",
      name: p.metadata?.name ?? "",
      ...(p.metadata?.uid !== undefined ? { uid: p.metadata.uid } : {}),
      reason: `looks like a pod of BatchSandbox ${name} but is not controlled by it${bsUid !== undefined ? ` (UID ${bsUid})` : ""}`,
    });
    return false;
  };
  const byLabel = pods
    .filter((p) => p.metadata?.labels?.[LABEL_BATCH_SANDBOX] === name && p.metadata.name !== `${name}-0`)
    .sort((a, b) => (a.metadata?.name ?? "").localeCompare(b.metadata?.name ?? ""))
    .filter(owned);
  const zero = [findByName(pods, `${name}-0`)].filter(owned);
  const ordered = [...byAlloc, ...byLabel, ...zero];
  const running = ordered.find((p): p is Pod => isRunningOnNode(p));
  if (running) return { found: true, pod: running, nodeName: running.spec?.nodeName ?? "", ignored };
  const notes: string[] = [];
  if (alloc.error !== undefined) notes.push(alloc.error);
  if (!bs) {
    return {
      found: false,
      reason: "SourceNotFound",
      message: [`BatchSandbox ${name} (spec.sandboxName) does not exist`, ...notes].join("; "),
      ignored,
    };
  }
  const seen = ordered.filter((p): p is Pod => p !== undefined);
  return {
    ignored,
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
