// Finalize fixtures with a registry in the loop: hooks/fixtures/finalize/<case>.json holds the request,
// the registry's answers to what the core planned (results, by target ref), and the hook's response.
// The same replay produces them (scripts/record-finalize-fixtures.ts) and checks them (unit tests).
import type { SyncRequest, SyncResponse } from "../../src/api/types.js";
import type { ControllerConfig } from "../../src/config/config.js";
import { type CleanupPlan, foldCleanup, planCleanup, type TargetResult } from "../../src/reconcile/cleanup.js";
import { finalize, type FinalizeLookups } from "../../src/reconcile/finalize.js";

export const FINALIZE_FIXTURES = new URL("../../hooks/fixtures/finalize/", import.meta.url);

export interface FinalizeFixture {
  hook: "finalize";
  /** What the case shows, in a sentence. */
  description: string;
  now: string;
  request: SyncRequest;
  /** The registry's answer per planned target (empty when the core planned no registry calls). */
  registry: TargetResult[];
  /** The shell's API look-ups the core planned (fresh source pod, commit pods), when any. */
  lookups?: FinalizeLookups;
  response: SyncResponse;
}

/** Plans, feeds the given registry answers in, folds and finalizes: the whole hook minus the I/O. */
export function replayFinalize(
  req: SyncRequest,
  cfg: ControllerConfig,
  now: Date,
  registry: readonly TargetResult[] = [],
  lookups: FinalizeLookups = {},
): { plan: CleanupPlan; response: SyncResponse } {
  const plan = planCleanup(req, cfg, now);
  const planned = plan.action === "attempt" ? plan.targets.map((t) => t.ref) : [];
  const answered = registry.map((r) => r.ref);
  const unplanned = answered.filter((r) => !planned.includes(r));
  const unanswered = planned.filter((r) => !answered.includes(r));
  if (unplanned.length > 0 || unanswered.length > 0) {
    throw new Error(`registry answers do not match the plan: unplanned ${JSON.stringify(unplanned)}, unanswered ${JSON.stringify(unanswered)}`);
  }
  const fold = foldCleanup(req, cfg, now, plan, registry);
  const cleanup = fold === undefined ? undefined : { cleanup: fold.cleanup, finished: fold.finished, ...(fold.resyncAfterSeconds !== undefined ? { resyncAfterSeconds: fold.resyncAfterSeconds } : {}) };
  return { plan, response: finalize(req, cfg, now, cleanup, lookups) };
}
