// The registry as witness, against the real registry (Debian's docker-registry): the hook server runs
// with the real image verifier and clean-up runner and is called over HTTP the way Metacontroller
// does. A commit is recorded only as the registry shows it (forged digest refused, lost result
// recovered, outage waited out), a manifest removed behind the controller's back flips
// ImageAvailable, and verify before delete leaves a manifest that is not this snapshot's.
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { SandboxSnapshotStatus, SyncRequest, SyncResponse } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import { ANNOTATION_SNAPSHOT_UID } from "../../src/contract/commit-job.js";
import { sync } from "../../src/reconcile/sync.js";
import type { RegistryClient } from "../../src/registry/index.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createCleanupRunner } from "../../src/server/cleanup-runner.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { missingComponents } from "../support/components.js";
import { UID, batchSandbox, job, jobPod, request, sandboxPod, snapshot, withStatus } from "../support/fixtures.js";
import { pushTestImage } from "../support/registry-image.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { LogCapture } from "../support/log-capture.js";

const missing = missingComponents(["docker-registry"]);
const OTHER_UID = "0a1b2c3d-0000-4000-8000-0123456789ab";

interface Harness {
  server: RunningServer;
  config: ControllerConfig;
  clock: { now: Date };
  logs: LogCapture;
}

const running: RunningServer[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
});

async function hookServer(reg: TestRegistry): Promise<Harness> {
  const config = loadConfig({
    HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
    METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
    SNAPSHOT_REGISTRY: `${reg.url}/snapshots`,
    SNAPSHOT_REGISTRY_INSECURE: "true",
    LOG_LEVEL: "debug",
  });
  const logs = new LogCapture();
  const log = pino({ level: "debug" }, logs);
  const clock = { now: new Date("2026-11-29T10:00:05Z") };
  const verifier = await createImageVerifier(config, { log, dockerConfig: undefined, retry: { maxAttempts: 1 } });
  const cleanup = await createCleanupRunner(config, { log });
  const server = await startServer(config, { log, cleanup, verifier, clock: () => clock.now });
  running.push(server);
  return { server, config, clock, logs };
}

async function call(h: Harness, hook: "sync" | "finalize", req: SyncRequest): Promise<SyncResponse> {
  const res = await fetch(`http://127.0.0.1:${h.server.hookPort}/${hook}`, { method: "POST", body: JSON.stringify(req), headers: { "content-type": "application/json" } });
  const text = await res.text();
  expect(res.status, text).toBe(200);
  const body = JSON.parse(text) as SyncResponse;
  const v = validateSyncResponse(body);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return body;
}

/** A snapshot of BatchSandbox `source` named `name`, Committing as the real sync core leaves it. */
function committing(h: Harness, name: string, source: string): SandboxSnapshotStatus {
  const world = { pods: [sandboxPod(`${source}-0`, { sandbox: source })], batchSandboxes: [batchSandbox(source)] };
  const res = sync(request(snapshot({ sandboxName: source }, { name }), world), h.config, h.clock.now);
  expect(res.status.phase).toBe("Committing");
  return res.status;
}

function finished(name: string, source: string, status: SandboxSnapshotStatus, message: string | undefined): SyncRequest {
  return request(snapshot({ sandboxName: source }, { name, status }), {
    jobs: [job(`${name}-commit`, "succeeded")],
    pods: [sandboxPod(`${source}-0`, { sandbox: source }), jobPod(`${name}-commit`, "Succeeded", message)],
  });
}

function target(status: SandboxSnapshotStatus): { repository: string; tag: string; uri: string } {
  const uri = status.containers?.[0]?.imageUri ?? "";
  const slash = uri.indexOf("/");
  const colon = uri.lastIndexOf(":");
  return { repository: uri.slice(slash + 1, colon), tag: uri.slice(colon + 1), uri };
}

describe.skipIf(missing)("the registry as witness (real registry)", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  beforeAll(async () => {
    reg = await startRegistry();
    client = reg.client();
  });
  afterAll(async () => {
    await reg.close();
  });

  it("records a commit whose manifest is in the registry with this snapshot's UID, pinned by digest", async () => {
    const h = await hookServer(reg);
    const status = committing(h, "snap-ok", "sbx-ok");
    const t = target(status);
    const img = await pushTestImage(client, t.repository, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const message = JSON.stringify({ containers: [{ name: "sandbox", image: t.uri, digest: img.digest, sizeBytes: 11 }], freezeMillis: 3 });
    const res = await call(h, "sync", finished("snap-ok", "sbx-ok", status, message));
    expect(res.status.phase).toBe("Succeed");
    expect(res.status.containers?.[0]).toMatchObject({ imageDigest: img.digest, imageUri: `${t.uri}@${img.digest}` });
    expect(res.status.conditions?.find((c) => c.type === "ImageAvailable")?.status).toBe("True");
  });

  it("refuses a forged digest (another snapshot's image) and records nothing", async () => {
    const h = await hookServer(reg);
    const status = committing(h, "snap-forged", "sbx-forged");
    const t = target(status);
    await pushTestImage(client, t.repository, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const victim = await pushTestImage(client, t.repository, { tag: "victim", annotations: { [ANNOTATION_SNAPSHOT_UID]: OTHER_UID } });
    const message = JSON.stringify({ containers: [{ name: "sandbox", image: t.uri, digest: victim.digest }] });
    const res = await call(h, "sync", finished("snap-forged", "sbx-forged", status, message));
    expect(res.status.phase).toBe("Failed");
    const failed = res.status.conditions?.find((c) => c.type === "Failed");
    expect(failed?.reason).toBe("CommitResultUnverified");
    expect(failed?.message).toContain(victim.digest);
    expect(res.status.containers?.[0]?.imageDigest).toBeUndefined();
  });

  it("recovers a lost result from the manifest at the tag", async () => {
    const h = await hookServer(reg);
    const status = committing(h, "snap-lost", "sbx-lost");
    const t = target(status);
    const img = await pushTestImage(client, t.repository, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const res = await call(h, "sync", finished("snap-lost", "sbx-lost", status, undefined));
    expect(res.status.phase).toBe("Succeed");
    expect(res.status.containers?.[0]).toMatchObject({ imageDigest: img.digest, sizeBytes: img.layers.at(-1)?.size });
  });

  it("keeps Committing while the registry is down, and records the commit once it is back", async () => {
    const own = await startRegistry();
    try {
      const h = await hookServer(own);
      const status = committing(h, "snap-outage", "sbx-outage");
      const t = target(status);
      const img = await pushTestImage(own.client(), t.repository, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
      const message = JSON.stringify({ containers: [{ name: "sandbox", image: t.uri, digest: img.digest }] });
      const req = finished("snap-outage", "sbx-outage", status, message);
      await own.stop();
      const down = await call(h, "sync", req);
      expect(down.status.phase).toBe("Committing");
      expect(down.status.conditions?.find((c) => c.type === "Ready")?.reason).toBe("RegistryUnavailable");
      expect(down.resyncAfterSeconds).toBeGreaterThan(0);
      const again = await call(h, "sync", withStatus(req, down.status));
      expect(again.status).toEqual(down.status);
      await own.start();
      h.clock.now = new Date(h.clock.now.getTime() + 10_000);
      const back = await call(h, "sync", withStatus(req, down.status));
      expect(back.status.phase).toBe("Succeed");
    } finally {
      await own.close();
    }
  });

  it("flips ImageAvailable to False when the manifest is removed behind the controller's back", async () => {
    const h = await hookServer(reg);
    const status = committing(h, "snap-gc", "sbx-gc");
    const t = target(status);
    const img = await pushTestImage(client, t.repository, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const message = JSON.stringify({ containers: [{ name: "sandbox", image: t.uri, digest: img.digest }] });
    const done = await call(h, "sync", finished("snap-gc", "sbx-gc", status, message));
    expect(done.status.phase).toBe("Succeed");
    const succeedReq = (s: SandboxSnapshotStatus): SyncRequest => request(snapshot({ sandboxName: "sbx-gc" }, { name: "snap-gc", status: s }));

    // A day later, still there: nothing changes but the next check time.
    h.clock.now = new Date(h.clock.now.getTime() + 86_400_000);
    const kept = await call(h, "sync", succeedReq(done.status));
    expect(kept.status.conditions).toEqual(done.status.conditions);

    // Someone deletes the manifest in the registry; the next check notices.
    expect(await client.deleteManifest(t.repository, img.digest)).toBe("deleted");
    h.clock.now = new Date(h.clock.now.getTime() + 86_400_000);
    const lost = await call(h, "sync", succeedReq(kept.status));
    expect(lost.status.phase).toBe("Succeed");
    expect(lost.status.conditions?.find((c) => c.type === "ImageAvailable")).toMatchObject({ status: "False", reason: "ManifestNotFound" });
    expect(lost.status.conditions?.find((c) => c.type === "ImageAvailable")?.message).toContain(img.digest);
  });

  it("verify before delete: a recorded digest whose manifest is not this snapshot's is left, and reported as foreign", async () => {
    const h = await hookServer(reg);
    const status = committing(h, "snap-del", "sbx-del");
    const t = target(status);
    const foreign = await pushTestImage(client, t.repository, { tag: "someone-else", annotations: { [ANNOTATION_SNAPSHOT_UID]: OTHER_UID } });
    const ours = await pushTestImage(client, `${t.repository}-x`, { tag: t.tag, annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    // A status naming another snapshot's digest (as a status writer or a forged request could).
    const recorded: SandboxSnapshotStatus = {
      phase: "Succeed",
      deletionPolicy: "Delete",
      containers: [
        { containerName: "sandbox", imageUri: `${t.uri}@${foreign.digest}`, imageDigest: foreign.digest },
        { containerName: "sidecar", imageUri: `${ours.reference}@${ours.digest}`, imageDigest: ours.digest },
      ],
    };
    const snap = snapshot({ sandboxName: "sbx-del" }, { name: "snap-del", status: recorded, deleting: "2026-11-29T10:00:00Z" });
    const res = await call(h, "finalize", { ...request(snap), finalizing: true });
    // The clean-up result is written first; the call that sees it stored finalizes.
    expect(res.finalized).toBe(false);
    const again = await call(h, "finalize", { ...withStatus(request(snap), res.status), finalizing: true });
    expect(again.finalized).toBe(true);
    expect(again.status).toEqual(res.status);
    expect(res.status.cleanup).toMatchObject({ state: "Done", deletedDigests: [ours.digest], foreignDigests: [`${reg.url}/${t.repository}@${foreign.digest}`] });
    expect(await client.headManifest(t.repository, foreign.digest)).toBeDefined();
    expect(await client.headManifest(ours.repository, ours.digest)).toBeUndefined();
    expect(h.logs.text).toContain("trusts its caller");
  });
});
