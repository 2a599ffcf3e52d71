// The committer's result, read from the termination message of the commit Job's pod.
import type { Pod } from "../api/types.js";

export interface CommitResultContainer {
  name: string;
  image: string;
  digest: string;
  sizeBytes?: number;
}

export type CommitResult =
  | { kind: "success"; containers: CommitResultContainer[]; freezeMillis?: number }
  | { kind: "error"; error: string }
  | { kind: "missing" }
  | { kind: "invalid"; message: string };

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function terminationMessage(pod: Pod | undefined): string | undefined {
  for (const cs of pod?.status?.containerStatuses ?? []) {
    const msg = cs.state?.terminated?.message;
    if (msg !== undefined && msg !== "") return msg;
  }
  return undefined;
}

export function parseCommitResult(message: string | undefined): CommitResult {
  if (message === undefined) return { kind: "missing" };
  let v: unknown;
  try {
    v = JSON.parse(message);
  } catch {
    // FallbackToLogsOnError puts the log tail here when the committer crashed before writing JSON.
    return { kind: "invalid", message: `committer output is not a result: ${truncate(message, 300)}` };
  }
  if (typeof v !== "object" || v === null) return { kind: "invalid", message: "committer result is not an object" };
  const o = v as Record<string, unknown>;
  if (typeof o.error === "string") return { kind: "error", error: truncate(o.error, 1000) };
  if (!Array.isArray(o.containers)) return { kind: "invalid", message: "committer result has no containers list" };
  const containers: CommitResultContainer[] = [];
  for (const c of o.containers as unknown[]) {
    const e = (c ?? {}) as Record<string, unknown>;
    if (typeof e.name !== "string" || typeof e.image !== "string" || typeof e.digest !== "string" || !DIGEST.test(e.digest)) {
      return { kind: "invalid", message: "committer result has a container entry without name, image and sha256 digest" };
    }
    const entry: CommitResultContainer = { name: e.name, image: e.image, digest: e.digest };
    if (typeof e.sizeBytes === "number" && Number.isSafeInteger(e.sizeBytes) && e.sizeBytes >= 0) entry.sizeBytes = e.sizeBytes;
    containers.push(entry);
  }
  const freeze = o.freezeMillis;
  return typeof freeze === "number" && Number.isFinite(freeze) && freeze >= 0
    ? { kind: "success", containers, freezeMillis: Math.round(freeze) }
    : { kind: "success", containers };
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
