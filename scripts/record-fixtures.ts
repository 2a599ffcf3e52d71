// Writes hooks/fixtures/*.json: example hook requests for every phase in both key styles, with the
// answer the hooks gave when they were recorded. Contract tests check every request and answer
// against the hook schemas and that today's answers still equal the recorded ones. Re-record only
// on purpose (`npx tsx scripts/record-fixtures.ts`) and review the diff.
import { mkdirSync, writeFileSync } from "node:fs";
import type { SyncRequest } from "../src/api/types.js";
import type { SyncLookups } from "../src/reconcile/sync.js";
import { customize } from "../src/reconcile/customize.js";
import { finalize, type FinalizeLookups } from "../src/reconcile/finalize.js";
import { sync } from "../src/reconcile/sync.js";
import { DIGEST_A, batchSandbox, cfg, job, jobPod, registryHolds, sandboxPod, request, snapshot, t0, withStatus, type KeyStyle } from "../test/support/fixtures.js";
import { agentSandbox, sandboxPod as agentSandboxPod, sandboxRequest, sandboxSnapshot } from "../test/support/agent-sandbox-fixtures.js";

const dir = new URL("../hooks/fixtures/", import.meta.url);
mkdirSync(dir, { recursive: true });

function write(name: string, body: object): void {
  writeFileSync(new URL(`${name}.json`, dir), JSON.stringify(body, null, 2) + "\n");
}

const sandboxWorld = { pods: [sandboxPod("sbx-0", { containers: ["sandbox", "sidecar"] })], batchSandboxes: [batchSandbox("sbx", { allocPods: ["sbx-0"] })] };

for (const style of ["v1", "v2"] as KeyStyle[]) {
  // lookups: what the shell read before the call (the registry for a finished commit), if anything.
  const syncCase = (name: string, req: SyncRequest, lookups?: SyncLookups): void => {
    write(`sync-${name}-${style}`, { hook: "sync", now: t0.toISOString(), request: req, ...(lookups ? { lookups } : {}), response: sync(req, cfg, t0, lookups) });
  };
  const pendingNew = request(snapshot(), { ...sandboxWorld, style });
  syncCase("pending-source-running", pendingNew);
  syncCase("pending-waiting-for-source", request(snapshot({ podName: "p1" }), { style }));
  const committing = sync(pendingNew, cfg, t0).status;
  const commitWorld = (jobState: "running" | "succeeded" | "failed", message?: string) =>
    request(snapshot({ sandboxName: "sbx" }, { status: committing }), {
      style,
      jobs: [job("snap1-commit", jobState)],
      pods: [...sandboxWorld.pods, jobPod("snap1-commit", jobState === "running" ? "Running" : jobState === "succeeded" ? "Succeeded" : "Failed", message)],
      batchSandboxes: sandboxWorld.batchSandboxes,
    });
  syncCase("committing-job-running", commitWorld("running"));
  const result = {
    containers: (committing.containers ?? []).map((c, i) => ({ name: c.containerName, image: c.imageUri, digest: i === 0 ? DIGEST_A : `sha256:${"c".repeat(64)}`, sizeBytes: 4096 })),
    freezeMillis: 42,
  };
  const inRegistry: SyncLookups = { images: registryHolds(committing, Object.fromEntries(result.containers.map((c) => [c.name, c.digest]))) };
  syncCase("committing-job-succeeded", commitWorld("succeeded", JSON.stringify(result)), inRegistry);
  const failedReq = commitWorld("failed", JSON.stringify({ error: "push to registry.example.com failed: unauthorized" }));
  syncCase("committing-job-failed", failedReq);
  const failedStatus = sync(failedReq, cfg, t0).status;
  syncCase(
    "failed-unpause-running",
    withStatus(request(snapshot(), { style, jobs: [job("snap1-unpause", "running")], pods: sandboxWorld.pods }), failedStatus),
  );
  syncCase(
    "failed-unpause-succeeded",
    withStatus(request(snapshot(), { style, jobs: [job("snap1-unpause", "succeeded")], pods: sandboxWorld.pods }), failedStatus),
  );
  const succeeded = sync(commitWorld("succeeded", JSON.stringify(result)), cfg, t0, inRegistry).status;
  syncCase("succeed", withStatus(request(snapshot(), { style }), succeeded));

  const finalizeCase = (name: string, req: SyncRequest, lookups?: FinalizeLookups): void => {
    write(`finalize-${name}-${style}`, { hook: "finalize", now: t0.toISOString(), request: req, ...(lookups ? { lookups } : {}), response: finalize(req, cfg, t0, undefined, lookups) });
  };
  finalizeCase(
    "committing-pod-gone",
    { ...request(snapshot({ sandboxName: "sbx" }, { status: committing, deleting: "2026-11-29T10:00:04Z" }), { style, jobs: [job("snap1-commit", "running")] }), finalizing: true },
    { sourcePod: null },
  );
  finalizeCase(
    "succeed-no-children",
    { ...request(snapshot({ sandboxName: "sbx" }, { status: succeeded, deleting: "2026-11-29T10:00:04Z" }), { style }), finalizing: true },
  );
}

write("customize-sandbox", { hook: "customize", request: { parent: snapshot() }, allocPods: ["pool-1"], response: customize({ parent: snapshot() }, ["pool-1"]) });
write("customize-pod", { hook: "customize", request: { parent: snapshot({ podName: "p1" }) }, response: customize({ parent: snapshot({ podName: "p1" }) }) });

// agent-sandbox Sandbox sources (spec.sandboxRef): a warm-pool pod named by the annotation, a suspended
// Sandbox, and a pod with the Sandbox's name that the Sandbox does not control.
for (const style of ["v1", "v2"] as KeyStyle[]) {
  const syncCase = (name: string, req: SyncRequest): void => {
    write(`sync-${name}-${style}`, { hook: "sync", now: t0.toISOString(), request: req, response: sync(req, cfg, t0) });
  };
  const owned = sandboxSnapshot("asb", { owned: true });
  syncCase(
    "pending-agent-sandbox-annotated-pod",
    sandboxRequest(owned, { style, sandboxes: [agentSandbox("asb", { podName: "pool-abc12" })], pods: [agentSandboxPod("pool-abc12"), agentSandboxPod("asb", "none")] }),
  );
  syncCase("pending-agent-sandbox-suspended", sandboxRequest(owned, { style, sandboxes: [agentSandbox("asb", { operatingMode: "Suspended" })] }));
  syncCase("pending-agent-sandbox-pod-not-owned", sandboxRequest(owned, { style, sandboxes: [agentSandbox("asb")], pods: [agentSandboxPod("asb", "other-uid")] }));
}
const asbParent = sandboxSnapshot("asb", { owned: true });
const asbShell = { version: cfg.agentSandboxVersion, annotatedPod: "pool-abc12" };
write("customize-agent-sandbox", { hook: "customize", request: { parent: asbParent }, agentSandbox: asbShell, response: customize({ parent: asbParent }, [], asbShell) });
process.stdout.write("fixtures recorded in hooks/fixtures/\n");
