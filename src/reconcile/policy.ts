import type { DeletionPolicy, SandboxSnapshot } from "../api/types.js";
import { agentSandboxOwner } from "./agent-sandbox.js";
import { batchSandboxOwner } from "./image-ref.js";

/**
 * The explicit spec.deletionPolicy; else Retain when a BatchSandbox controls the snapshot
 * (OpenSandbox's BatchSandbox controller deletes its pause snapshots while the resumed pod may still
 * run from the image) or an agent-sandbox Sandbox does (a Sandbox resumed from the snapshot runs from
 * its images); else Delete.
 */
export function effectiveDeletionPolicy(snap: SandboxSnapshot): DeletionPolicy {
  if (snap.spec.deletionPolicy !== undefined) return snap.spec.deletionPolicy;
  if (snap.status?.deletionPolicy !== undefined) return snap.status.deletionPolicy;
  return batchSandboxOwner(snap) !== undefined || agentSandboxOwner(snap) !== undefined ? "Retain" : "Delete";
}
