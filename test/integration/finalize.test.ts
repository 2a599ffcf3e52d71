// The finalize hook against the real registry (Debian's docker-registry): the hook server runs with
// the real clean-up runner, /finalize is called the way Metacontroller does (status written back,
// called again after resyncAfterSeconds) until the snapshot is finalized. Checks that this snapshot's
// manifests are gone, everything else (other snapshots' images, blobs) is untouched, 405 and outages
// are handled by rule, Basic and Bearer auth work, and no credential ever appears in answers or logs.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { SandboxSnapshotStatus, SyncRequest, SyncResponse } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import { ANNOTATION_SNAPSHOT_UID } from "../../src/reconcile/names.js";
import type { RegistryClient } from "../../src/registry/index.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createCleanupRunner } from "../../src/server/cleanup-runner.js";
import { missingComponents } from "../support/components.js";
import { UID, request, snapshot } from "../support/fixtures.js";
import { pushTestImage, type TestImage } from "../support/registry-image.js";
import { startRegistry, type TestRegistry, writeDockerConfig } from "../support/registry.js";
import { LogCapture } from "../support/log-capture.js";

const missing = missingComponents(["docker-registry", "htpasswd", "openssl"]);

const USER = "snapshot-cleaner";
const PASSWORD = "cl3an-PASSWORD-quux-2718";
const WRONG_PASSWORD = "wr0ng-PASSWORD-zork-3141";
const b64 = (s: string): string => Buffer.from(s).toString("base64");
const SECRETS = [PASSWORD, WRONG_PASSWORD, b64(`${USER}:${PASSWORD}`), b64(`${USER}:${WRONG_PASSWORD}`)];
const OTHER_UID = "0a1b2c3d-0000-4000-8000-0123456789ab";
const DELETED_AT = "2026-11-29T10:00:00Z";

interface Harness {
  server: RunningServer;
  logs: LogCapture;
  /** The hook server's clock (Metacontroller's calls come "later" by advancing it). */
  clock: { now: Date };
  config: ControllerConfig;
  answers: string[];
}

const running: RunningServer[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
});

async function hookServer(reg: TestRegistry, env: Record<string, string> = {}): Promise<Harness> {
  const config = loadConfig({
    HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
    METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
    SNAPSHOT_REGISTRY: `${reg.url}/snapshots`,
    SNAPSHOT_REGISTRY_INSECURE: "true",
    LOG_LEVEL: "debug",
    ...env,
  });
  const logs = new LogCapture();
  const log = pino({ level: "debug" }, logs);
  const clock = { now: new Date("2026-11-29T10:00:01Z") };
  const cleanup = await createCleanupRunner(config, { log });
  const server = await startServer(config, { log, cleanup, clock: () => clock.now });
  running.push(server);
  return { server, logs, clock, config, answers: [] };
}

async function callFinalize(h: Harness, req: SyncRequest): Promise<SyncResponse> {
  const res = await fetch(`http://127.0.0.1:${h.server.hookPort}/finalize`, {
    method: "POST",
    body: JSON.stringify(req),
    headers: { "content-type": "application/json" },
  });
  const text = await res.text();
  h.answers.push(text);
  expect(res.status, text).toBe(200);
  const body = JSON.parse(text) as SyncResponse;
  const v = validateSyncResponse(body);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return body;
}

/** Calls /finalize as Metacontroller would until finalized: writes the status back, waits resyncAfterSeconds. */
async function finalizeUntilDone(h: Harness, req: SyncRequest, maxCalls = 10): Promise<{ res: SyncResponse; calls: number }> {
  let current = req;
  for (let calls = 1; calls <= maxCalls; calls++) {
    const res = await callFinalize(h, current);
    if (res.finalized === true) return { res, calls };
    current = { ...current, parent: { ...current.parent, status: res.status } };
    h.clock.now = new Date(h.clock.now.getTime() + (res.resyncAfterSeconds ?? 10) * 1000);
  }
  throw new Error(`not finalized after ${maxCalls} calls: ${h.answers.at(-1) ?? ""}`);
}

function deletedSnapshot(status: SandboxSnapshotStatus, uid = UID): SyncRequest {
  const snap = snapshot({ sandboxName: "sbx" }, { status, deleting: DELETED_AT });
  snap.metadata.uid = uid;
  return { ...request(snap), finalizing: true };
}

function succeeded(images: Record<string, TestImage>): SandboxSnapshotStatus {
  return {
    phase: "Succeed",
    deletionPolicy: "Delete",
    containers: Object.entries(images).map(([containerName, img]) => ({ containerName, imageUri: img.reference, imageDigest: img.digest })),
  };
}

async function gone(client: RegistryClient, img: TestImage): Promise<boolean> {
  return (await client.headManifest(img.repository, img.digest)) === undefined;
}

async function metric(h: Harness, line: RegExp): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${h.server.metricsPort}/metrics`)).text();
  return text.split("\n").find((l) => line.test(l));
}

function expectNoSecret(h: Harness): void {
  for (const s of SECRETS) {
    expect(h.logs.text, "a credential leaked into the logs").not.toContain(s);
    for (const a of h.answers) expect(a, "a credential leaked into a hook answer").not.toContain(s);
  }
  expect(h.logs.text).not.toMatch(/Basic\s+[A-Za-z0-9+/=]{8,}|Bearer\s+ey/);
}

describe.skipIf(missing)("finalize against a registry with deletion enabled", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  beforeAll(async () => {
    reg = await startRegistry();
    client = reg.client();
  });
  afterAll(async () => {
    await reg.close();
  });

  it("deletes this snapshot's manifests by digest and leaves other snapshots' images and all blobs alone", async () => {
    const ours = {
      sandbox: await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-ours", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } }),
      sidecar: await pushTestImage(client, "snapshots/sbx-sidecar", { tag: "snap-ours", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } }),
    };
    const other = await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-other", annotations: { [ANNOTATION_SNAPSHOT_UID]: OTHER_UID } });
    const h = await hookServer(reg);

    const { res, calls } = await finalizeUntilDone(h, deletedSnapshot(succeeded(ours)));
    // One call deletes and writes the result; the next, seeing it stored, finalizes.
    expect(calls).toBe(2);
    expect(res.status.cleanup).toEqual({ state: "Done", attempts: 1, deletedDigests: [ours.sandbox.digest, ours.sidecar.digest] });
    expect(await gone(client, ours.sandbox)).toBe(true);
    expect(await gone(client, ours.sidecar)).toBe(true);
    expect(await client.resolveTag("snapshots/sbx-sandbox", "snap-ours")).toBeUndefined();
    expect(await client.resolveTag("snapshots/sbx-sandbox", "snap-other")).toBe(other.digest);
    // Blobs are never deleted by us (the registry's garbage collection frees them).
    for (const l of ours.sandbox.layers) expect(await client.statBlob("snapshots/sbx-sandbox", l.digest)).toBeDefined();
    expect(await metric(h, /^sandbox_snapshot_cleanup_outcomes_total\{outcome="deleted"\} 2$/)).toBeDefined();
    expect(h.logs.text).toContain("registry clean-up done");

    // A repeated finalize (Metacontroller retrying after a lost answer) finds them gone: still done.
    const { res: again } = await finalizeUntilDone(h, deletedSnapshot({ ...succeeded(ours), cleanup: undefined }));
    expect(again.status.cleanup?.state).toBe("Done");
    expect(await metric(h, /^sandbox_snapshot_cleanup_outcomes_total\{outcome="not_found"\} 2$/)).toBeDefined();
  });

  it("a commit that died mid-push: deletes the tagged manifest carrying this snapshot's UID, never another one", async () => {
    const ours = await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-midpush", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const foreign = await pushTestImage(client, "snapshots/sbx-sidecar", { tag: "snap-midpush", annotations: { [ANNOTATION_SNAPSHOT_UID]: OTHER_UID } });
    const unannotated = await pushTestImage(client, "snapshots/sbx-extra", { tag: "snap-midpush" });
    const h = await hookServer(reg);
    const status: SandboxSnapshotStatus = {
      phase: "Failed",
      deletionPolicy: "Delete",
      containers: [
        { containerName: "sandbox", imageUri: ours.reference },
        { containerName: "sidecar", imageUri: foreign.reference },
        { containerName: "extra", imageUri: unannotated.reference },
        { containerName: "never-pushed", imageUri: `${reg.url}/snapshots/sbx-never:snap-midpush` },
      ],
    };
    const { res } = await finalizeUntilDone(h, deletedSnapshot(status));
    expect(res.status.cleanup).toEqual({
      state: "Done",
      attempts: 1,
      deletedDigests: [ours.digest],
      // Left in the registry and said so.
      foreignDigests: [`${reg.url}/${foreign.repository}@${foreign.digest}`, `${reg.url}/${unannotated.repository}@${unannotated.digest}`],
    });
    expect(await gone(client, ours)).toBe(true);
    expect(await gone(client, foreign)).toBe(false);
    expect(await gone(client, unannotated)).toBe(false);
    expect(await metric(h, /^sandbox_snapshot_cleanup_outcomes_total\{outcome="foreign"\} 2$/)).toBeDefined();
  });

  it("Retain (BatchSandbox-owned by default) keeps the images", async () => {
    const img = await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-retained", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const h = await hookServer(reg);
    const req = deletedSnapshot({ ...succeeded({ sandbox: img }), deletionPolicy: "Retain" });
    req.parent.metadata.ownerReferences = [{ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "BatchSandbox", name: "sbx", uid: "bs-uid", controller: true }];
    const { res } = await finalizeUntilDone(h, req);
    expect(res.status.cleanup).toBeUndefined();
    expect(await gone(client, img)).toBe(false);
  });

  it("registry stopped mid-way: no 5xx, status keeps what is still to delete, backs off, finishes after the restart", async () => {
    const imgs = {
      sandbox: await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-outage", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } }),
      sidecar: await pushTestImage(client, "snapshots/sbx-sidecar", { tag: "snap-outage", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } }),
    };
    const h = await hookServer(reg);
    // The first manifest is deleted before the outage (an earlier call); the registry then goes away.
    const req0 = deletedSnapshot(succeeded(imgs));
    const first = await callFinalize(h, { ...req0, parent: { ...req0.parent, status: { ...req0.parent.status, containers: req0.parent.status?.containers?.slice(0, 1) } } });
    expect(first.status.cleanup?.deletedDigests).toEqual([imgs.sandbox.digest]);
    const afterFirst: SandboxSnapshotStatus = { ...succeeded(imgs), cleanup: { state: "Pending", attempts: 1, deletedDigests: [imgs.sandbox.digest] } };
    await reg.stop();
    try {
      let req = deletedSnapshot(afterFirst);
      const started = Date.now();
      const down = await callFinalize(h, req);
      expect(Date.now() - started).toBeLessThan(6000);
      expect(down.finalized).toBe(false);
      expect(down.status.cleanup).toMatchObject({ state: "Pending", attempts: 2, deletedDigests: [imgs.sandbox.digest] });
      expect(down.status.cleanup?.lastError).toMatch(/sbx-sidecar/);
      expect(down.resyncAfterSeconds).toBe(10);
      expect(Date.parse(down.status.cleanup?.nextAttemptTime ?? "") - h.clock.now.getTime()).toBe(10_000);

      // Before the next attempt time: identical status, no registry call.
      req = { ...req, parent: { ...req.parent, status: down.status } };
      h.clock.now = new Date(h.clock.now.getTime() + 4000);
      const early = await callFinalize(h, req);
      expect(early.status).toEqual(down.status);
      expect(early.resyncAfterSeconds).toBe(6);
      expect(await metric(h, /^sandbox_snapshot_cleanup_outcomes_total\{outcome="error"\} 1$/)).toBeDefined();

      await reg.start();
      h.clock.now = new Date(h.clock.now.getTime() + 6000);
      const { res } = await finalizeUntilDone(h, req);
      expect(res.status.cleanup).toEqual({ state: "Done", attempts: 3, deletedDigests: [imgs.sandbox.digest, imgs.sidecar.digest] });
      expect(await gone(client, imgs.sandbox)).toBe(true);
      expect(await gone(client, imgs.sidecar)).toBe(true);
    } finally {
      await reg.start();
    }
  });

  it("abandons by the clean-up deadline when the registry stays down", async () => {
    const img = await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-deadline", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const h = await hookServer(reg, { CLEANUP_DEADLINE_SECONDS: "60" });
    await reg.stop();
    try {
      const { res, calls } = await finalizeUntilDone(h, deletedSnapshot(succeeded({ sandbox: img })), 20);
      expect(calls).toBeGreaterThan(2);
      expect(res.status.cleanup?.state).toBe("Abandoned");
      expect(res.status.cleanup?.lastError).toMatch(/CLEANUP_DEADLINE_SECONDS=60/);
      expect(h.clock.now.getTime()).toBeGreaterThan(Date.parse(DELETED_AT) + 60_000);
      expect(await metric(h, /^sandbox_snapshot_cleanup_abandoned_total\{reason="deadline"\} 1$/)).toBeDefined();
      expect(h.logs.text).toContain("registry clean-up abandoned");
    } finally {
      await reg.start();
    }
  });
});

describe.skipIf(missing)("finalize against a registry with deletion disabled", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ deletion: false });
  });
  afterAll(async () => {
    await reg.close();
  });

  it("reports 405, abandons by rule, finalizes and counts it", async () => {
    const client = reg.client();
    const img = await pushTestImage(client, "snapshots/sbx-sandbox", { tag: "snap-405", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
    const h = await hookServer(reg);
    const { res, calls } = await finalizeUntilDone(h, deletedSnapshot(succeeded({ sandbox: img })));
    expect(calls).toBe(2);
    expect(res.finalized).toBe(true);
    expect(res.status.cleanup?.state).toBe("Abandoned");
    expect(res.status.cleanup?.lastError).toMatch(/405/);
    expect(await gone(client, img)).toBe(false);
    expect(await metric(h, /^sandbox_snapshot_cleanup_abandoned_total\{reason="deletion-unsupported"\} 1$/)).toBeDefined();
    expect(await metric(h, /^sandbox_snapshot_cleanup_outcomes_total\{outcome="unsupported"\} 1$/)).toBeDefined();
    expect(h.logs.text).toContain("registry clean-up abandoned");
  });
});

describe.skipIf(missing)("finalize with registry credentials", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "finalize-auth-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("htpasswd (Basic): deletes with the controller-wide docker config; no credential in answers or logs", async () => {
    const reg = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    try {
      const pusher = reg.client({ credentials: { username: USER, password: PASSWORD } });
      const img = await pushTestImage(pusher, "snapshots/sbx-sandbox", { tag: "snap-basic", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
      const cfgDir = writeDockerConfig(mkdtempSync(join(dir, "basic-")), reg.url, { username: USER, password: PASSWORD, authOnly: true });
      const h = await hookServer(reg, { REGISTRY_CLEANUP_DOCKER_CONFIG: join(cfgDir, "config.json") });
      const { res } = await finalizeUntilDone(h, deletedSnapshot(succeeded({ sandbox: img })));
      expect(res.status.cleanup?.state).toBe("Done");
      expect(await gone(pusher, img)).toBe(true);
      expectNoSecret(h);
    } finally {
      await reg.close();
    }
  });

  it("htpasswd with a wrong password: keeps retrying with the error in status, never a credential", async () => {
    const reg = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    try {
      const pusher = reg.client({ credentials: { username: USER, password: PASSWORD } });
      const img = await pushTestImage(pusher, "snapshots/sbx-sandbox", { tag: "snap-wrong", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
      const cfgDir = writeDockerConfig(mkdtempSync(join(dir, "wrong-")), reg.url, { username: USER, password: WRONG_PASSWORD });
      const h = await hookServer(reg, { REGISTRY_CLEANUP_DOCKER_CONFIG: cfgDir });
      const res = await callFinalize(h, deletedSnapshot(succeeded({ sandbox: img })));
      expect(res.finalized).toBe(false);
      expect(res.status.cleanup).toMatchObject({ state: "Pending", attempts: 1 });
      expect(res.status.cleanup?.lastError).toMatch(/401|unauthori/i);
      expect(await gone(pusher, img)).toBe(false);
      expectNoSecret(h);
    } finally {
      await reg.close();
    }
  });

  it("token auth (Bearer): deletes through the token service; no credential or token in answers or logs", async () => {
    const reg = await startRegistry({ token: { users: { [USER]: PASSWORD } } });
    try {
      const pusher = reg.client({ credentials: { username: USER, password: PASSWORD } });
      const img = await pushTestImage(pusher, "snapshots/sbx-sandbox", { tag: "snap-token", annotations: { [ANNOTATION_SNAPSHOT_UID]: UID } });
      const cfgDir = writeDockerConfig(mkdtempSync(join(dir, "token-")), reg.url, { username: USER, password: PASSWORD });
      const h = await hookServer(reg, { REGISTRY_CLEANUP_DOCKER_CONFIG: join(cfgDir, "config.json") });
      const { res } = await finalizeUntilDone(h, deletedSnapshot(succeeded({ sandbox: img })));
      expect(res.status.cleanup?.state).toBe("Done");
      expect(await gone(pusher, img)).toBe(true);
      const issuer = reg.issuer;
      expect(issuer?.requests.some((r) => r.user === USER && r.scopes.some((s) => s.endsWith(":delete") || s.includes("delete")))).toBe(true);
      expectNoSecret(h);
      for (const t of issuer?.issuedTokens ?? []) {
        expect(h.logs.text).not.toContain(t);
        for (const a of h.answers) expect(a).not.toContain(t);
      }
    } finally {
      await reg.close();
    }
  });
});
