import type { DeletionPolicy, SandboxSnapshot } from "../api/types.js";
import { batchSandboxOwner } from "./image-ref.js";

/**
 * The explicit spec.deletionPolicy; else Retain when a BatchSandbox controls the snapshot
 * (OpenSandbox's BatchSandbox controller deletes its pause snapshots while the resumed pod may still
 * run from the image); else Delete.
 */
export function effectiveDeletionPolicy(snap: SandboxSnapshot): DeletionPolicy {
  if (snap.spec.deletionPolicy !== undefined) return snap.spec.deletionPolicy;
  if (snap.status?.deletionPolicy !== undefined) return snap.status.deletionPolicy;
  return batchSandboxOwner(snap) !== undefined ? "Retain" : "Delete";
}
