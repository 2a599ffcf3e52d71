import type { Condition } from "../api/types.js";

export type ConditionStatus = Condition["status"];

/**
 * Returns `conditions` with `type` set. lastTransitionTime moves only when the status changes, so a
 * repeated sync over the same world returns the identical list (the fixpoint rule).
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
  status: ConditionStatus,
  reason: string,
  message: string,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const i = list.findIndex((c) => c.type === type);
  const prev = i >= 0 ? list[i] : undefined;
  const lastTransitionTime =
    prev?.status === status && prev.lastTransitionTime !== undefined ? prev.lastTransitionTime : formatTime(now);
  const next: Condition = { type, status, reason, message, lastTransitionTime };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function findCondition(conditions: readonly Condition[] | undefined, type: string): Condition | undefined {
  return conditions?.find((c) => c.type === type);
}

/** RFC 3339 with second precision, as Kubernetes stores times. */
export function formatTime(t: Date): string {
  return t.toISOString().replace(/\.\d{3}Z$/, "Z");
}
