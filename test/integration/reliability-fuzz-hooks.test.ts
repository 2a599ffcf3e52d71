// Reliability: "never crashed". Property-based fuzzing of the three hooks against the running server
// (startServer on 127.0.0.1:0, with a clean-up runner and Kubernetes access behind fakes so every code
// path runs without a network): requests generated from the hook schema and the recorded fixtures,
// mutated (wrong types, huge strings, deep nesting, unicode, missing fields, __proto__ keys) and twisted
// as raw bodies (duplicated keys, truncated JSON, bad UTF-8, wrong content types and encodings).
// Every answer is < 500; every 200 is valid against the response schema; every 4xx carries an error
// body; the server keeps serving; memory stays flat. Short form here; RELIABILITY_FULL=1 sends 100,000.
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import fc from "fast-check";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BatchSandbox, Pod } from "../../src/api/types.js";
import { validateCustomizeResponse, validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig } from "../../src/config/config.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createCleanupRunner, type CleanupRegistry } from "../../src/server/cleanup-runner.js";
import type { KubeAccess } from "../../src/server/kube.js";
import { t0 } from "../support/fixtures.js";
import { createPoster, fixtureRequests, hookRequest, type RawRequest, type RawResponse } from "../support/hook-fuzz.js";

const FULL = process.env.RELIABILITY_FULL === "1";
const TOTAL = Number(process.env.RELIABILITY_FUZZ_REQUESTS ?? (FULL ? 100_000 : 3_000));
const BATCH = 50;
/** Heap growth allowed between the warm-up and the end (after a forced GC). */
const HEAP_TOLERANCE_BYTES = 24 * 1024 * 1024;
const SEED = Number(process.env.RELIABILITY_SEED ?? Date.now() % 2 ** 31);

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Counts log lines and keeps the last few; every line must be JSON (pino). */
class LogSink extends Writable {
  lines = 0;
  errors = 0;
  nonJson = 0;
  lastError = "";
  tail: string[] = [];
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    for (const l of chunk.toString().split("\n")) {
      if (l === "") continue;
      this.lines++;
      try {
        const o = JSON.parse(l) as { level?: number };
        if ((o.level ?? 0) >= 50) {
          this.errors++;
          this.lastError = l.slice(0, 4000);
        }
      } catch {
        this.nonJson++;
      }
      this.tail.push(l.length > 500 ? `${l.slice(0, 500)}…` : l);
      if (this.tail.length > 20) this.tail.shift();
    }
    cb();
  }
}

function hash(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
  return Math.abs(h);
}

/** Kubernetes behind a fake: answers vary with the name, some calls fail. */
const kube: KubeAccess = {
  getAgentSandbox: () => Promise.resolve(undefined),
  getBatchSandbox: (namespace, name) => {
    const h = hash(name);
    if (h % 7 === 0) return Promise.reject(new Error("connection refused"));
    if (h % 5 === 0) return Promise.resolve(undefined);
    const alloc = ["{", '{"pods":["sbx-0"]}', '{"pods":[1]}', "null", JSON.stringify({ pods: [name, `${name}-0`] })][h % 5] ?? "";
    const bs: BatchSandbox = {
      apiVersion: "sandbox.opensandbox.io/v1alpha1",
      kind: "BatchSandbox",
      metadata: { name, namespace, generation: h % 4, annotations: { "sandbox.opensandbox.io/alloc-status": alloc } },
      spec: {},
    };
    return Promise.resolve(bs);
  },
  getPod: (namespace, name) => {
    const h = hash(name);
    if (h % 6 === 0) return Promise.reject(new Error("timeout"));
    if (h % 3 === 0) return Promise.resolve(undefined);
    const p: Pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace },
      spec: { nodeName: "node-a", containers: [{ name: "sandbox" }] },
      status: { phase: h % 2 === 0 ? "Running" : "Pending" },
    };
    return Promise.resolve(p);
  },
  getSandboxSnapshot: (_ns, name) => (hash(name) % 5 === 0 ? Promise.reject(new Error("timeout")) : Promise.resolve(undefined)),
  secretExists: (_ns, name) => (hash(name) % 4 === 0 ? Promise.reject(new Error("forbidden")) : Promise.resolve(hash(name) % 3 !== 0)),
  listPods: (_ns, selector) => (hash(selector) % 5 === 0 ? Promise.reject(new Error("timeout")) : Promise.resolve([])),
  listEvents: () => Promise.resolve([]),
  createEvent: () => Promise.resolve("created"),
};

/** The registry behind a fake: outcomes vary with the digest or tag. */
const registry: CleanupRegistry = {
  deleteManifest: (_repo, digest) => {
    const h = hash(digest) % 4;
    if (h === 0) return Promise.reject(new Error("connection reset"));
    return Promise.resolve(h === 1 ? "not-found" : "deleted");
  },
  manifestAnnotations: (_repo, ref): Promise<{ digest: string; annotations: Readonly<Record<string, string>> } | undefined> => {
    const h = hash(ref) % 4;
    if (h === 0) return Promise.reject(new Error("503 Service Unavailable"));
    if (h === 1) return Promise.resolve(undefined);
    const annotations: Record<string, string> = h === 2 ? { "sandbox.opensandbox.io/snapshot-uid": "7d3f0c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6" } : {};
    return Promise.resolve({ digest: `sha256:${"c".repeat(64)}`, annotations });
  },
};

const sink = new LogSink();

interface Tally {
  requests: number;
  /** Outcomes of 200 answers: phase of sync/finalize answers, finalized, clean-up state. */
  outcomes?: Record<string, number>;
  byStatus: Record<number, number>;
  byHook: Record<string, number>;
}

function checkAnswer(r: RawRequest, a: RawResponse, t: Tally): void {
  t.requests++;
  t.byStatus[a.status] = (t.byStatus[a.status] ?? 0) + 1;
  t.byHook[`${r.hook} ${a.status}`] = (t.byHook[`${r.hook} ${a.status}`] ?? 0) + 1;
  const where = `${r.how} → ${a.status} ${a.body.slice(0, 300)}`;
  if (a.status >= 500 || a.status < 200) {
    const dump = join(tmpdir(), `hook-fuzz-${r.hook}-${Date.now()}.body`);
    writeFileSync(dump, r.body);
    throw new Error(`server answered ${a.status}: ${where} (request body written to ${dump}; server log: ${sink.lastError})`);
  }
  let body: unknown;
  try {
    body = JSON.parse(a.body);
  } catch {
    throw new Error(`answer is not JSON: ${where}`);
  }
  if (a.status === 200) {
    const v = r.hook === "customize" ? validateCustomizeResponse(body) : validateSyncResponse(body);
    if (!v.ok) throw new Error(`200 answer does not match the response schema (${JSON.stringify(v.errors)}): ${where}`);
    if (t.outcomes !== undefined && r.hook !== "customize") {
      const s = body as { status: { phase?: string; cleanup?: { state?: string } }; finalized?: boolean };
      const k = `${r.hook}:${s.status.phase ?? "none"}${s.finalized === true ? ":finalized" : ""}${s.status.cleanup?.state !== undefined ? `:cleanup-${s.status.cleanup.state}` : ""}`;
      t.outcomes[k] = (t.outcomes[k] ?? 0) + 1;
    }
    return;
  }
  if (a.status < 400) throw new Error(`unexpected status: ${where}`);
  const e = body as { error?: unknown; errors?: unknown };
  if (typeof e.error !== "string" || e.error === "") throw new Error(`4xx answer without an error message: ${where}`);
  if (a.status === 400 && e.errors !== undefined && !Array.isArray(e.errors)) throw new Error(`400 answer with errors not a list: ${where}`);
}

describe("reliability: the hook server never crashes on any input", () => {
  let server: RunningServer;
  beforeAll(async () => {
    const config = loadConfig({
      HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
      METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
      SNAPSHOT_REGISTRY: "registry.example.com/snapshots",
      SNAPSHOT_PUSH_SECRET: "push-secret",
      LOG_LEVEL: "debug",
    });
    const log = pino({ level: "debug" }, sink);
    const cleanup = await createCleanupRunner(config, { log, clientFor: () => registry, budgetMs: 2000 });
    server = await startServer(config, { log, kube, cleanup, clock: () => t0 });
  });
  afterAll(async () => {
    await server.close();
  });

  it(`answers ${TOTAL} fuzzed requests with no 5xx, schema-valid 200s and error bodies on 4xx, memory flat`, async () => {
    const fixtures = fixtureRequests();
    expect(fixtures.sync.length + fixtures.finalize.length + fixtures.customize.length).toBeGreaterThan(10);
    const { post, close } = createPoster(server.hookPort);
    const tally: Tally = { requests: 0, byStatus: {}, byHook: {}, outcomes: {} };
    const started = performance.now();
    const sendBatch = async (batch: RawRequest[]): Promise<void> => {
      const answers = await Promise.all(batch.map((r) => post(r)));
      for (const [i, a] of answers.entries()) checkAnswer(batch[i] as RawRequest, a, tally);
    };
    try {
      const arb = fc.array(hookRequest(fixtures), { minLength: BATCH, maxLength: BATCH });
      const warmupRuns = Math.max(4, Math.floor(TOTAL / BATCH / 10));
      const runs = Math.max(1, Math.ceil(TOTAL / BATCH) - warmupRuns);
      // warm-up (JIT, caches, pools), then measure
      await fc.assert(fc.asyncProperty(arb, sendBatch), { numRuns: warmupRuns, seed: SEED, endOnFailure: true });
      gc();
      const before = process.memoryUsage();
      await fc.assert(fc.asyncProperty(arb, sendBatch), { numRuns: runs, seed: SEED + 1, endOnFailure: true });
      gc();
      await new Promise((r) => setTimeout(r, 50));
      gc();
      const after = process.memoryUsage();
      const seconds = (performance.now() - started) / 1000;
      const mib = (n: number): string => (n / 1024 / 1024).toFixed(1);
      const figures = {
        seed: SEED,
        requests: tally.requests,
        seconds: Number(seconds.toFixed(1)),
        perSecond: Math.round(tally.requests / seconds),
        byStatus: tally.byStatus,
        byHookAndStatus: tally.byHook,
        okOutcomes: tally.outcomes,
        heapUsedMiB: `${mib(before.heapUsed)} → ${mib(after.heapUsed)}`,
        rssMiB: `${mib(before.rss)} → ${mib(after.rss)}`,
        logLines: sink.lines,
        errorLogLines: sink.errors,
      };
      console.log(`[reliability] hook fuzzing: ${JSON.stringify(figures)}`);
      expect(tally.requests).toBeGreaterThanOrEqual(TOTAL - BATCH);
      // all three outcomes happen: the generator reaches valid requests as well as bad ones
      expect(tally.byStatus[200] ?? 0).toBeGreaterThan(tally.requests / 20);
      expect(tally.byStatus[400] ?? 0).toBeGreaterThan(tally.requests / 20);
      for (const h of ["sync", "finalize", "customize"]) expect(tally.byHook[`${h} 200`] ?? 0).toBeGreaterThan(0);
      expect(sink.nonJson).toBe(0);
      expect(sink.errors, sink.tail.join("\n")).toBe(0);
      expect(after.heapUsed - before.heapUsed).toBeLessThan(HEAP_TOLERANCE_BYTES);
      expect(Object.prototype).not.toHaveProperty("polluted");
    } finally {
      close();
    }
    const health = await fetch(`http://127.0.0.1:${server.hookPort}/healthz`);
    expect(health.status).toBe(200);
  }, FULL ? 3_600_000 : 600_000); // a guard against hangs, not a speed target: 3,000 requests take minutes on a loaded 2-core machine

  it.each([
    ["nesting a million levels deep", () => Buffer.from(`${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}`)],
    ["nesting objects a hundred thousand levels deep", () => Buffer.from(`${'{"a":'.repeat(100_000)}1${"}".repeat(100_000)}`)],
    ["a body just under the 4 MiB limit of one string", () => Buffer.from(JSON.stringify({ parent: "x".repeat(4 * 1024 * 1024 - 20) }))],
    ["a body over the limit", () => Buffer.alloc(4 * 1024 * 1024 + 10, 0x20)],
    ["a number with a thousand digits", () => Buffer.from(`{"parent":${"9".repeat(1000)}}`)],
    ["only a byte-order mark", () => Buffer.from([0xef, 0xbb, 0xbf])],
    ["a NUL byte", () => Buffer.from([0])],
  ])("answers %s with a 4xx and keeps serving", async (_name, make) => {
    const { post, close } = createPoster(server.hookPort);
    try {
      for (const hook of ["sync", "finalize", "customize"] as const) {
        const r: RawRequest = { hook, body: make(), headers: { "content-type": "application/json" }, how: _name };
        const a = await post(r);
        checkAnswer(r, a, { requests: 0, byStatus: {}, byHook: {} });
        expect(a.status).toBeGreaterThanOrEqual(400);
      }
    } finally {
      close();
    }
    expect((await fetch(`http://127.0.0.1:${server.hookPort}/healthz`)).status).toBe(200);
  });
});
