// Reliability: "never leaked". Create/delete cycles of snapshots driven through the running hook server
// (/sync, then /finalize until finalized, status written back and resyncAfterSeconds honoured, the way
// Metacontroller calls it) against the real registry, with pushed images standing in for commits (one
// small image per container, carrying the snapshot-uid annotation, layers shared between snapshots).
// Mixed: Delete, Retain and the default policy; some deleted mid-commit (image pushed, only the tag known;
// or nothing pushed yet); snapshot names reused (a new snapshot re-pushes an old one's tag); some never
// deleted; repositories shared between snapshots; the registry stopped and restarted at random points.
// At the end the registry's storage holds exactly the manifests of retained and still-existing
// snapshots, and no deletion removed another snapshot's manifest.
// Short form: 15 cycles. RELIABILITY_FULL=1: 100 (RELIABILITY_CYCLES overrides).
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxSnapshot, SandboxSnapshotStatus, SyncRequest, SyncResponse } from "../../src/api/types.js";
import { validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig } from "../../src/config/config.js";
import { ANNOTATION_SNAPSHOT_UID } from "../../src/reconcile/names.js";
import { parseImageReference } from "../../src/registry/reference.js";
import type { RegistryClient } from "../../src/registry/index.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { createCleanupRunner } from "../../src/server/cleanup-runner.js";
import { missingComponents } from "../support/components.js";
import { NS, job, jobPod, pod, request, snapshot, withStatus } from "../support/fixtures.js";
import { makeTestLayer, pushTestImage, type TestLayer } from "../support/registry-image.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["docker-registry"]);

const FULL = process.env.RELIABILITY_FULL === "1";
const CYCLES = Number(process.env.RELIABILITY_CYCLES ?? (FULL ? 100 : 15));
const SEED = Number(process.env.RELIABILITY_SEED ?? Date.now() % 2 ** 31);

/** A small seeded PRNG (mulberry32), so a failing run can be repeated with RELIABILITY_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Policy = "Delete" | "Retain" | "default";
type Fate = "committed" | "mid-commit-pushed" | "mid-commit-nothing" | "kept";

interface PushedImage {
  readonly repository: string;
  readonly tag: string;
  readonly digest: string;
  readonly ownerUid: string;
}

interface Snap {
  readonly name: string;
  readonly uid: string;
  readonly podName: string;
  readonly containers: string[];
  readonly policy: Policy;
  readonly fate: Fate;
  deleted: boolean;
  images: PushedImage[];
}

describe.skipIf(missing)("reliability: registry images are never leaked and never wrongly deleted", () => {
  let reg: TestRegistry;
  let client: RegistryClient;
  let server: RunningServer;
  const clock = { now: new Date("2026-11-29T10:00:00Z") };
  const random = prng(SEED);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
  const counts = {
    seed: SEED,
    cycles: 0,
    byPolicy: {} as Record<string, number>,
    byFate: {} as Record<string, number>,
    registryStops: 0,
    finalizeCalls: 0,
    finalizeCallsWithRegistryDown: 0,
    syncCalls: 0,
    pushedManifests: 0,
  };

  beforeAll(async () => {
    reg = await startRegistry();
    client = reg.client({ retry: { maxAttempts: 6, initialDelayMs: 100, maxDelayMs: 1000 } });
    const config = loadConfig({
      HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
      METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
      SNAPSHOT_REGISTRY: `${reg.host}/snapshots`,
      SNAPSHOT_REGISTRY_INSECURE: "true",
      // exact accounting: no abandonment by deadline in this test (abandonment has its own tests)
      CLEANUP_DEADLINE_SECONDS: "31536000",
    });
    const log = pino({ level: "silent" });
    const cleanup = await createCleanupRunner(config, { log, budgetMs: 3000, attemptTimeoutMs: 1000 });
    const verifier = await createImageVerifier(config, { log });
    server = await startServer(config, { log, cleanup, verifier, clock: () => clock.now });
  });
  afterAll(async () => {
    await server.close();
    await reg.close();
    console.log(`[reliability] never leaked: ${JSON.stringify(counts)}`);
  });

  const tick = (seconds: number): void => {
    clock.now = new Date(clock.now.getTime() + Math.max(1, seconds) * 1000);
  };

  async function hook(path: "sync" | "finalize", body: SyncRequest): Promise<SyncResponse> {
    const res = await fetch(`http://127.0.0.1:${server.hookPort}/${path}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    const answer = JSON.parse(text) as SyncResponse;
    expect(validateSyncResponse(answer).ok).toBe(true);
    return answer;
  }

  function parent(s: Snap, status?: SandboxSnapshotStatus, deleting = false): SandboxSnapshot {
    const p = snapshot(
      { podName: s.podName, ...(s.policy === "default" ? {} : { deletionPolicy: s.policy }) },
      { name: s.name, ...(status ? { status } : {}), ...(deleting ? { deleting: clock.now.toISOString().replace(/\.\d+Z$/, "Z") } : {}) },
    );
    p.metadata.uid = s.uid;
    return p;
  }

  async function ensureUp(): Promise<void> {
    if (!reg.running) await reg.start();
  }

  /** The simulated committer: one image per container, at the controller's image reference. */
  async function pushImages(s: Snap, status: SandboxSnapshotStatus, shared: TestLayer[]): Promise<PushedImage[]> {
    await ensureUp();
    const out: PushedImage[] = [];
    for (const c of status.containers ?? []) {
      const ref = parseImageReference(c.imageUri ?? "");
      const img = await pushTestImage(client, ref.repository, {
        tag: ref.tag ?? "latest",
        useLayers: [pick(shared), await makeTestLayer(256)],
        annotations: { [ANNOTATION_SNAPSHOT_UID]: s.uid, "sandbox.opensandbox.io/snapshot-name": s.name },
      });
      counts.pushedManifests++;
      out.push({ repository: ref.repository, tag: img.tag, digest: img.digest, ownerUid: s.uid });
    }
    return out;
  }

  /** Calls /finalize as Metacontroller does until finalized, with registry outages at random points. */
  async function deleteSnapshot(s: Snap, status: SandboxSnapshotStatus, commitRunning: boolean): Promise<SyncResponse> {
    const commitJob = `${s.name}-commit`;
    let children: string[] = commitRunning ? [commitJob] : [];
    let current = status;
    for (let call = 1; call <= 60; call++) {
      if (reg.running && random() < 0.25) {
        await reg.stop();
        counts.registryStops++;
      } else if (!reg.running && (random() < 0.5 || call > 40)) {
        await reg.start();
      }
      const pods = [pod(s.podName, { containers: s.containers })];
      const jobs = children.map((name) => (name === commitJob && commitRunning && call === 1 ? job(name, "running") : job(name, "succeeded")));
      if (commitRunning && call === 1) pods.push(jobPod(commitJob, "Running"));
      const body: SyncRequest = { ...withStatus(request(parent(s, current, true), { pods, jobs }), current), finalizing: true };
      counts.finalizeCalls++;
      if (!reg.running) counts.finalizeCallsWithRegistryDown++;
      const res = await hook("finalize", body);
      if (res.finalized === true) return res;
      current = res.status;
      // Metacontroller creates what is returned and deletes what is not
      children = res.children.map((c) => c.metadata.name ?? "");
      tick(res.resyncAfterSeconds ?? 10);
    }
    throw new Error(`snapshot ${s.name} not finalized after 60 calls: ${JSON.stringify(current.cleanup)}`);
  }

  it("a snapshot deleted before its push never deletes the manifest an earlier snapshot of the same name left at that tag", async () => {
    const shared = [await makeTestLayer(512)];
    const mk = (uid: string, policy: Policy, fate: Fate): Snap => ({ name: "reused", uid, podName: "pr", containers: ["main"], policy, fate, deleted: false, images: [] });
    // the first one: committed, Retain, deleted — its manifest stays, at the tag
    const first = mk("11111111-0000-4000-8000-000000000001", "Retain", "committed");
    const c1 = await hook("sync", request(parent(first), { pods: [pod(first.podName)] }));
    first.images = await pushImages(first, c1.status, shared);
    await deleteSnapshot(first, { ...c1.status, containers: [{ ...(c1.status.containers?.[0] ?? { containerName: "main" }), imageDigest: first.images[0]?.digest ?? "" }] }, false);
    // the second one, same name (so the same tag), Delete, deleted mid-commit before it pushed anything
    const second = mk("22222222-0000-4000-8000-000000000002", "Delete", "mid-commit-nothing");
    const c2 = await hook("sync", request(parent(second), { pods: [pod(second.podName)] }));
    expect(c2.status.containers?.[0]?.imageUri).toBe(c1.status.containers?.[0]?.imageUri);
    const done = await deleteSnapshot(second, c2.status, true);
    expect(done.status.cleanup?.state).toBe("Done");
    // deleteSnapshot may leave the registry stopped (outages at random calls): bring it back, and wait
    // until it answers, before reading it.
    await ensureUp();
    const img = first.images[0] as PushedImage;
    expect(await client.headManifest(img.repository, img.digest), "the first snapshot's retained manifest was deleted").toBeDefined();
    expect(await client.resolveTag(img.repository, img.tag)).toBe(img.digest);
  });

  it(`${CYCLES} create/delete cycles leave exactly the retained and still-existing snapshots' manifests`, async () => {
    const shared = await Promise.all(Array.from({ length: 3 }, () => makeTestLayer(1024)));
    const snaps: Snap[] = [];
    const alive = new Set<string>();
    for (let i = 0; i < CYCLES; i++) {
      counts.cycles++;
      // names are reused once free (a new snapshot re-pushes an old one's tag); pods (and so repositories) are shared
      const free = Array.from({ length: 8 + alive.size }, (_, k) => `leak-${k}`).filter((n) => !alive.has(n));
      const name = pick(free);
      const policy = pick<Policy>(["Delete", "Delete", "Retain", "default"]);
      const fate = pick<Fate>(["committed", "committed", "committed", "mid-commit-pushed", "mid-commit-nothing", "kept"]);
      const s: Snap = {
        name,
        uid: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
        podName: pick(["pa", "pb", "pc"]),
        containers: random() < 0.3 ? ["main", "side"] : ["main"],
        policy,
        fate,
        deleted: false,
        images: [],
      };
      counts.byPolicy[policy] = (counts.byPolicy[policy] ?? 0) + 1;
      counts.byFate[fate] = (counts.byFate[fate] ?? 0) + 1;
      snaps.push(s);
      alive.add(name);

      // Pending → Committing
      counts.syncCalls++;
      const committing = await hook("sync", request(parent(s), { pods: [pod(s.podName, { containers: s.containers })] }));
      expect(committing.status.phase).toBe("Committing");
      tick(1);

      if (fate === "mid-commit-nothing") {
        await deleteSnapshot(s, committing.status, true);
      } else {
        s.images = await pushImages(s, committing.status, shared);
        if (fate === "mid-commit-pushed") {
          await deleteSnapshot(s, committing.status, true);
        } else {
          const result = JSON.stringify({
            containers: s.images.map((img, k) => ({ name: s.containers[k], image: committing.status.containers?.[k]?.imageUri, digest: img.digest, sizeBytes: 1 })),
            freezeMillis: 5,
          });
          const commitJob = `${s.name}-commit`;
          counts.syncCalls++;
          const done = await hook(
            "sync",
            withStatus(request(parent(s, committing.status), { pods: [pod(s.podName, { containers: s.containers }), jobPod(commitJob, "Succeeded", result)], jobs: [job(commitJob, "succeeded")] }), committing.status),
          );
          expect(done.status.phase, JSON.stringify(done.status)).toBe("Succeed");
          if (fate === "committed") await deleteSnapshot(s, done.status, false);
        }
      }
      if (fate !== "kept") {
        s.deleted = true;
        alive.delete(name);
      }
      // now and then the registry restarts between cycles, too
      if (random() < 0.1) {
        await reg.restart();
        counts.registryStops++;
      }
      tick(5);
    }
    await ensureUp();

    // ---- the registry's storage: every manifest revision of every repository
    const stored = new Set<string>();
    // the cycles' repositories (<namespace>/<pod pa, pb, pc>/<container>); other tests in this file use their own
    const root = join(reg.dataDir, "docker/registry/v2/repositories/snapshots", NS);
    const cycleRepos = ["pa", "pb", "pc"].flatMap((p) => (existsSync(join(root, p)) ? readdirSync(join(root, p)).map((c) => `${NS}/${p}/${c}`) : []));
    for (const repo of cycleRepos) {
      const revs = join(root, "..", repo, "_manifests/revisions/sha256");
      for (const hex of existsSync(revs) ? readdirSync(revs) : []) {
        if (existsSync(join(revs, hex, "link"))) stored.add(`snapshots/${repo}@sha256:${hex}`);
      }
    }
    const expected = new Set<string>();
    const expectedGone = new Set<string>();
    for (const s of snaps) {
      const keep = !s.deleted || s.policy === "Retain";
      for (const img of s.images) (keep ? expected : expectedGone).add(`${img.repository}@${img.digest}`);
    }
    const leaked = [...stored].filter((m) => !expected.has(m));
    const wronglyDeleted = [...expected].filter((m) => !stored.has(m));
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const outcomes = Object.fromEntries(
      [...metrics.matchAll(/^\w*cleanup\w*\{[^}]*outcome="(\w+)"[^}]*\} (\d+)/gm)].map((m) => [m[1] ?? "", Number(m[2])]),
    );
    Object.assign(counts, {
      cleanupOutcomes: outcomes,
      snapshotsDeleted: snaps.filter((s) => s.deleted).length,
      snapshotsStillExisting: snaps.filter((s) => !s.deleted).length,
      manifestsExpectedToRemain: expected.size,
      manifestsExpectedDeleted: expectedGone.size,
      manifestsInRegistry: stored.size,
      leaked: leaked.length,
      wronglyDeleted: wronglyDeleted.length,
    });
    expect(leaked).toEqual([]);
    expect(wronglyDeleted).toEqual([]);
    // and through the API: kept ones answer, deleted ones are gone
    for (const m of expected) {
      const [repo, digest] = m.split("@") as [string, string];
      expect(await client.headManifest(repo, digest), m).toBeDefined();
    }
    for (const m of expectedGone) {
      const [repo, digest] = m.split("@") as [string, string];
      expect(await client.headManifest(repo, digest), m).toBeUndefined();
    }
  }, FULL ? 1_800_000 : 300_000);
});
