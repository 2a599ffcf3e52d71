// Kubernetes Events for phase changes and clean-up outcomes. The name is deterministic per
// (snapshot, transition), so a retried or concurrent hook call gets a conflict, not a duplicate.
import { createHash } from "node:crypto";
import type { SandboxSnapshot } from "../api/types.js";
import { API_VERSION, MANAGED_BY } from "../reconcile/names.js";
import { formatTime } from "../reconcile/conditions.js";
import type { SnapshotEvent } from "../reconcile/events.js";

export type { SnapshotEvent } from "../reconcile/events.js";

export function eventName(snap: SandboxSnapshot, transition: string): string {
  const uid = snap.metadata.uid ?? "";
  const suffix = createHash("sha256").update(`${uid}/${transition}`).digest("hex").slice(0, 12);
  return `${snap.metadata.name ?? "snapshot"}.${suffix}`;
}

export function eventObject(snap: SandboxSnapshot, ev: SnapshotEvent, now: Date): Record<string, unknown> {
  const t = formatTime(now);
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: eventName(snap, ev.transition), namespace: snap.metadata.namespace },
    involvedObject: {
      apiVersion: API_VERSION,
      kind: "SandboxSnapshot",
      name: snap.metadata.name,
      namespace: snap.metadata.namespace,
      uid: snap.metadata.uid,
    },
    type: ev.type,
    reason: ev.reason,
    message: ev.message.slice(0, 1024),
    source: { component: MANAGED_BY },
    reportingComponent: MANAGED_BY,
    reportingInstance: MANAGED_BY,
    firstTimestamp: t,
    lastTimestamp: t,
    count: 1,
  };
}
