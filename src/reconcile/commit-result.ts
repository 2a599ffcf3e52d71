// The committer's result, read from the termination message of the commit Job's pod. The format and
// its 4096-byte budget are the commit Job contract's (src/contract/commit-job.ts).
import type { Pod } from "../api/types.js";
import { parseCommitterResult, type ParsedResult } from "../contract/commit-job.js";

export type CommitResult = ParsedResult;

export function terminationMessage(pod: Pod | undefined): string | undefined {
  for (const cs of pod?.status?.containerStatuses ?? []) {
    const msg = cs.state?.terminated?.message;
    if (msg !== undefined && msg !== "") return msg;
  }
  return undefined;
}

/** `containers`: the snapshot's container names in argument order (the compact form names digests by position). */
export function parseCommitResult(message: string | undefined, containers: readonly string[] = []): CommitResult {
  return parseCommitterResult(message, containers);
}

export function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…`;
}
