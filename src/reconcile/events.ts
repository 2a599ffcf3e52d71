// Which Kubernetes Events a status change emits (pure): the shell only creates them. One Event per
// (snapshot, transition): the shell names it deterministically, so a retried call gets a conflict.
import type { SandboxSnapshotStatus } from "../api/types.js";
import { findCondition } from "./conditions.js";

export interface SnapshotEvent {
  transition: string;
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

function phaseEvent(prev: SandboxSnapshotStatus | undefined, next: SandboxSnapshotStatus): SnapshotEvent | undefined {
  const to = next.phase;
  if (to === undefined || to === prev?.phase || to === "Pending") return undefined;
  if (to === "Failed") {
    const f = findCondition(next.conditions, "Failed");
    return { transition: "failed", type: "Warning", reason: f?.reason ?? "Failed", message: f?.message ?? "snapshot failed" };
  }
  if (to === "Succeed") return { transition: "succeed", type: "Normal", reason: "Succeeded", message: "snapshot images pushed" };
  return {
    transition: "committing",
    type: "Normal",
    reason: "Committing",
    message: `committing pod ${next.sourcePodName ?? ""} on node ${next.sourceNodeName ?? ""}`,
  };
}

function resumedEvent(prev: SandboxSnapshotStatus | undefined, next: SandboxSnapshotStatus): SnapshotEvent | undefined {
  const resumed = findCondition(next.conditions, "ContainersResumed");
  const before = findCondition(prev?.conditions, "ContainersResumed");
  if (!resumed || resumed.status === "Unknown" || before?.status === resumed.status) return undefined;
  return {
    transition: `resumed-${resumed.status}`,
    type: resumed.status === "True" ? "Normal" : "Warning",
    reason: resumed.reason ?? "ContainersResumed",
    message: resumed.message ?? "",
  };
}

/** The Event for a clean-up outcome reached in this call (Done or Abandoned), if any. */
export function cleanupEvent(prev: SandboxSnapshotStatus | undefined, next: SandboxSnapshotStatus): SnapshotEvent | undefined {
  const before = prev?.cleanup?.state;
  const after = next.cleanup?.state;
  if (after === before || after === undefined || after === "Pending") return undefined;
  const n = next.cleanup?.deletedDigests?.length ?? 0;
  if (after === "Done") {
    return { transition: "cleanup-done", type: "Normal", reason: "RegistryCleanupDone", message: `registry clean-up done: ${n} manifest(s) deleted or already gone` };
  }
  return {
    transition: "cleanup-abandoned",
    type: "Warning",
    reason: "RegistryCleanupAbandoned",
    message: `registry clean-up abandoned after ${n} manifest(s) deleted: ${next.cleanup?.lastError ?? "no reason recorded"}`,
  };
}

/** The Events for going from the stored status `prev` to `next`, in the order they happened. */
export function transitionEvents(prev: SandboxSnapshotStatus | undefined, next: SandboxSnapshotStatus): SnapshotEvent[] {
  return [phaseEvent(prev, next), resumedEvent(prev, next), cleanupEvent(prev, next)].filter((e): e is SnapshotEvent => e !== undefined);
}
