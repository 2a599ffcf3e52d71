// /metrics on its own port, moved by real hook calls against startServer(): request counts and
// latency by hook and outcome, phase transitions, freeze time and layer sizes from committer results.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";
import { commitJobName } from "../../src/reconcile/names.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createCleanupRunner, type CleanupRegistry } from "../../src/server/cleanup-runner.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { DIGEST_A, DIGEST_B, UID, job, jobPod, pod, request, snapshot, t0, withStatus } from "../support/fixtures.js";
import type { SandboxSnapshotStatus } from "../../src/api/types.js";

const config = loadConfig({
  HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
  METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
  SNAPSHOT_REGISTRY: "registry.example.com/snapshots",
});

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(opts: Partial<Parameters<typeof startServer>[1]> = {}): Promise<{ hooks: string; metrics: string }> {
  server = await startServer(config, { log: pino({ level: "silent" }), clock: () => t0, ...opts });
  return { hooks: `http://127.0.0.1:${server.hookPort}`, metrics: `http://127.0.0.1:${server.metricsPort}` };
}

async function hook(base: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    body: typeof body === "string" ? body : JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
}

/** The value of one sample in Prometheus text format, 0 when the series does not exist yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? "").split(",").filter((s) => s !== "");
    if (want.length === have.length && want.every((l) => have.includes(l))) return Number(m[3]);
  }
  return 0;
}

async function scrape(metricsBase: string): Promise<string> {
  const res = await fetch(`${metricsBase}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  return res.text();
}

describe("metrics", () => {
  it("are served on the metrics port only, with every series this controller documents", async () => {
    const { hooks, metrics } = await start();
    const text = await scrape(metrics);
    for (const name of [
      "sandbox_snapshot_hook_requests_total",
      "sandbox_snapshot_hook_duration_seconds",
      "sandbox_snapshot_phase_transitions_total",
      "sandbox_snapshot_freeze_seconds",
      "sandbox_snapshot_layer_size_bytes",
      "sandbox_snapshot_cleanup_outcomes_total",
      "sandbox_snapshot_cleanup_abandoned_total",
      "sandbox_snapshot_event_failures_total",
      "sandbox_snapshot_process_cpu_seconds_total",
    ]) {
      expect(text, name).toContain(`# HELP ${name} `);
    }
    expect((await fetch(`${hooks}/metrics`)).status).toBe(404);
  });

  it("count hook requests by hook and outcome and time them", async () => {
    const { hooks, metrics } = await start();
    const req = request(snapshot({ podName: "p" }), { pods: [pod("p")] });
    expect((await hook(hooks, "/sync", req)).status).toBe(200);
    expect((await hook(hooks, "/sync", req)).status).toBe(200);
    expect((await hook(hooks, "/customize", { parent: snapshot({ podName: "p" }) })).status).toBe(200);
    expect((await hook(hooks, "/finalize", { ...request(snapshot({ podName: "p" }, { deleting: "2026-11-29T10:00:00Z" })), finalizing: true })).status).toBe(200);
    expect((await hook(hooks, "/sync", { parent: { spec: 1 } })).status).toBe(400);
    expect((await hook(hooks, "/customize", "{not json")).status).toBe(400);

    const text = await scrape(metrics);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "sync", outcome: "ok" })).toBe(2);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "sync", outcome: "invalid" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "customize", outcome: "ok" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "customize", outcome: "invalid" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "finalize", outcome: "ok" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "sync", outcome: "error" })).toBe(0);
    // Every validated call is timed, answered or rejected.
    expect(sample(text, "sandbox_snapshot_hook_duration_seconds_count", { hook: "sync" })).toBe(3);
    expect(sample(text, "sandbox_snapshot_hook_duration_seconds_count", { hook: "finalize" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_duration_seconds_sum", { hook: "sync" })).toBeGreaterThan(0);
  });

  it("count phase transitions once, and record freeze time and layer sizes from the committer's result", async () => {
    // The registry backs the result: the manifest at the tag has the digest and this snapshot's UID.
    const manifest = { digest: DIGEST_A, mediaType: "", size: 0, bytes: new Uint8Array(), manifest: { schemaVersion: 2, layers: [] }, annotations: { "sandbox.opensandbox.io/snapshot-uid": UID } };
    const verifier = await createImageVerifier(config, { dockerConfig: undefined, clientFor: () => ({ getManifest: () => Promise.resolve(manifest as never) }) });
    const { hooks, metrics } = await start({ verifier, clock: () => t0 });
    const pending = request(snapshot({ podName: "p" }), { pods: [pod("p")] });
    const first = (await (await hook(hooks, "/sync", pending)).json()) as { status: SandboxSnapshotStatus };
    expect(first.status.phase).toBe("Committing");
    // The same world again (Metacontroller wrote the status back): no new transition.
    expect((await hook(hooks, "/sync", withStatus(pending, first.status))).status).toBe(200);

    const jobName = commitJobName("snap1");
    const result = JSON.stringify({
      containers: [{ name: "sandbox", image: first.status.containers?.[0]?.imageUri, digest: DIGEST_A, sizeBytes: 2_500_000 }],
      freezeMillis: 180,
    });
    const done = withStatus(
      request(snapshot({ podName: "p" }), { pods: [pod("p"), jobPod(jobName, "Succeeded", result)], jobs: [job(jobName, "succeeded")] }),
      first.status,
    );
    const second = (await (await hook(hooks, "/sync", done)).json()) as { status: SandboxSnapshotStatus };
    expect(second.status.phase).toBe("Succeed");

    const text = await scrape(metrics);
    expect(sample(text, "sandbox_snapshot_phase_transitions_total", { from: "none", to: "Committing" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_phase_transitions_total", { from: "Committing", to: "Succeed" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_freeze_seconds_count")).toBe(1);
    expect(sample(text, "sandbox_snapshot_freeze_seconds_sum")).toBeCloseTo(0.18, 5);
    expect(sample(text, "sandbox_snapshot_freeze_seconds_bucket", { le: "0.25" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_freeze_seconds_bucket", { le: "0.1" })).toBe(0);
    expect(sample(text, "sandbox_snapshot_layer_size_bytes_count")).toBe(1);
    expect(sample(text, "sandbox_snapshot_layer_size_bytes_sum")).toBe(2_500_000);
  });

  it("count a failed snapshot's transition by its target phase", async () => {
    const { hooks, metrics } = await start();
    const bad = request(snapshot({ podName: "p", containers: ["nope"] }), { pods: [pod("p")] });
    const res = (await (await hook(hooks, "/sync", bad)).json()) as { status: SandboxSnapshotStatus };
    expect(res.status.phase).toBe("Failed");
    const text = await scrape(metrics);
    expect(sample(text, "sandbox_snapshot_phase_transitions_total", { from: "none", to: "Failed" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_freeze_seconds_count")).toBe(0);
  });

  it("count registry clean-up outcomes per manifest and clean-ups abandoned by rule", async () => {
    // The registry: DIGEST_A deletes, DIGEST_B fails every time.
    const registry: CleanupRegistry = {
      deleteManifest: (_repo, digest) => (digest === DIGEST_A ? Promise.resolve("deleted") : Promise.reject(new Error("connection refused"))),
      // Both manifests carry the snapshot's UID: verify before delete lets them go.
      manifestAnnotations: (_repo, reference) => Promise.resolve({ digest: reference, annotations: { "sandbox.opensandbox.io/snapshot-uid": UID } }),
    };
    const cleanup = await createCleanupRunner(config, { clientFor: () => registry });
    const { hooks, metrics } = await start({ cleanup, clock: () => t0 });
    const deleted = (name: string, digest: string, deletedAt: string) => ({
      ...request(
        snapshot(
          { podName: "p" },
          {
            name,
            deleting: deletedAt,
            status: {
              phase: "Succeed",
              containers: [{ containerName: "sandbox", imageUri: `registry.example.com/snapshots/p-sandbox:snap-${name}`, imageDigest: digest }],
            },
          },
        ),
      ),
      finalizing: true,
    });
    const done = (await (await hook(hooks, "/finalize", deleted("snap-ok", DIGEST_A, "2026-11-29T10:00:00Z"))).json()) as { finalized: boolean; status: SandboxSnapshotStatus };
    // Clean-up done in this call; finalized on the next call, over the status this one wrote.
    expect(done.status.cleanup?.state).toBe("Done");
    expect(done.finalized).toBe(false);
    // Deleted two hours ago, past CLEANUP_DEADLINE_SECONDS (3600): one more try, then given up.
    const gaveUp = (await (await hook(hooks, "/finalize", deleted("snap-stuck", DIGEST_B, "2026-11-29T08:00:00Z"))).json()) as {
      finalized: boolean;
      status: SandboxSnapshotStatus;
    };
    expect(gaveUp.status.cleanup?.state).toBe("Abandoned");
    expect(gaveUp.finalized).toBe(false);

    const text = await scrape(metrics);
    expect(sample(text, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "deleted" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_cleanup_outcomes_total", { outcome: "error" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_cleanup_abandoned_total", { reason: "deadline" })).toBe(1);
    expect(sample(text, "sandbox_snapshot_hook_requests_total", { hook: "finalize", outcome: "ok" })).toBe(2);
  });
});
