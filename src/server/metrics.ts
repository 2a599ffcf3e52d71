// Prometheus metrics, served on their own port (METRICS_LISTEN_ADDRESS).
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  hookRequests: Counter<"hook" | "outcome">;
  hookDuration: Histogram<"hook">;
  phaseTransitions: Counter<"from" | "to">;
  freezeSeconds: Histogram;
  snapshotSizeBytes: Histogram;
  cleanupOutcomes: Counter<"outcome">;
  cleanupAbandoned: Counter<"reason">;
  eventFailures: Counter;
  ignoredObjects: Counter<"kind">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "sandbox_snapshot_" });
  const m: Metrics = {
    registry,
    hookRequests: new Counter({
      name: "sandbox_snapshot_hook_requests_total",
      help: "Hook requests by hook (sync, finalize, customize) and outcome (ok, invalid, error).",
      labelNames: ["hook", "outcome"] as const,
      registers: [registry],
    }),
    hookDuration: new Histogram({
      name: "sandbox_snapshot_hook_duration_seconds",
      help: "Time to answer a hook request, including bounded API and registry calls.",
      labelNames: ["hook"] as const,
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    phaseTransitions: new Counter({
      name: "sandbox_snapshot_phase_transitions_total",
      help: "Snapshot phase transitions decided by the sync hook.",
      labelNames: ["from", "to"] as const,
      registers: [registry],
    }),
    freezeSeconds: new Histogram({
      name: "sandbox_snapshot_freeze_seconds",
      help: "How long sandboxes were frozen during capture, as reported by the committer.",
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers: [registry],
    }),
    snapshotSizeBytes: new Histogram({
      name: "sandbox_snapshot_layer_size_bytes",
      help: "Compressed size of captured layers, per container.",
      buckets: [1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10],
      registers: [registry],
    }),
    cleanupOutcomes: new Counter({
      name: "sandbox_snapshot_cleanup_outcomes_total",
      help: "Registry clean-up results per manifest (deleted, not_found, foreign, unsupported, error, not_attempted).",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    cleanupAbandoned: new Counter({
      name: "sandbox_snapshot_cleanup_abandoned_total",
      help: "Clean-ups given up by rule (registry refuses deletes, deadline passed).",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    eventFailures: new Counter({
      name: "sandbox_snapshot_event_failures_total",
      help: "Kubernetes Events that could not be created (hooks carry on).",
      registers: [registry],
    }),
    ignoredObjects: new Counter({
      name: "sandbox_snapshot_ignored_objects_total",
      help: "Objects that claimed to be a snapshot's source or Job pod but are not controlled by it, each counted once (docs/security.md).",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
  };
  return m;
}
