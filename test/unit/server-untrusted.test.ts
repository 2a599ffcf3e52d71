// The shell's side of "only what the Job controls counts": planted pods returned by the bounded
// direct look-ups change no outcome, fail no request, and are logged and counted once each.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Pod, SandboxSnapshotStatus } from "../../src/api/types.js";
import { loadConfig } from "../../src/config/config.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { paged } from "../../src/server/kube.js";
import type { ImageVerifier } from "../../src/server/image-verifier.js";
import { performSyncLookups } from "../../src/server/lookups.js";
import { DIGEST_A, DIGEST_B, JOB_FINISHED, UID, batchSandbox, forgedJobPod, job, jobPod, request, sandboxPod, snapshot } from "../support/fixtures.js";
import { emptyKube } from "../support/fake-kube.js";
import { LogCapture } from "../support/log-capture.js";

const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const result = (digest: string) => JSON.stringify({ containers: [{ name: "sandbox", image: "x", digest }] });

describe("hook server with planted pods", () => {
  it("a flood of forged commit pods from the look-up changes nothing, fails nothing, and each is logged and counted once", async () => {
    const forged: Pod[] = Array.from({ length: 150 }, (_, i) => forgedJobPod("snap1-commit", "Succeeded", result(DIGEST_B), { name: `a-${String(i).padStart(4, "0")}` }));
    const selectors: string[] = [];
    const kube = emptyKube({
      getBatchSandbox: () => Promise.resolve(batchSandbox("sbx")),
      getPod: (_ns, name) => Promise.resolve(name === "sbx-0" ? sandboxPod("sbx-0") : undefined),
      listPods: (_ns, selector) => {
        selectors.push(selector);
        return Promise.resolve([...forged, jobPod("snap1-commit", "Succeeded", result(DIGEST_A))]);
      },
    });
    const logs = new LogCapture();
    // The registry holds this snapshot's manifest at the tag; the plan it is asked must carry the real
    // pod's claim (DIGEST_A), never a forged one (the plan is made from the trusted pods only).
    const claimed: (string | undefined)[] = [];
    const verifier: ImageVerifier = (plan) => {
      claimed.push(...plan.checks.map((c) => c.digest));
      return Promise.resolve({
        purpose: plan.purpose,
        results: plan.checks.map((c) => ({ containerName: c.containerName, atTag: { outcome: "found" as const, digest: DIGEST_A, snapshotUid: UID } })),
      });
    };
    server = await startServer(config, { log: pino({ level: "info" }, logs), kube, verifier, clock: () => new Date(Date.parse(JOB_FINISHED) + 1000) });
    const url = `http://127.0.0.1:${server.hookPort}`;
    const status: SandboxSnapshotStatus = {
      phase: "Committing",
      sourcePodName: "sbx-0",
      sourcePodUID: "pod-uid-sbx-0",
      sourceNodeName: "node-a",
      commitJob: { uid: "job-uid-snap1-commit" },
      containers: [{ containerName: "sandbox", imageUri: "registry.example.com/snapshots/sbx-sandbox:snap-1" }],
    };
    const body = JSON.stringify(request(snapshot({ sandboxName: "sbx" }, { status }), { jobs: [job("snap1-commit", "succeeded")] }));
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${url}/sync`, { method: "POST", body, headers: { "content-type": "application/json" } });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as { status: SandboxSnapshotStatus };
      expect(answer.status.phase).toBe("Succeed");
      expect(answer.status.containers?.[0]?.imageDigest).toBe(DIGEST_A);
    }
    expect(selectors[0]).toBe("batch.kubernetes.io/controller-uid=job-uid-snap1-commit");
    expect(claimed.length).toBeGreaterThan(0);
    expect(claimed.every((d) => d === DIGEST_A)).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    expect(metrics).toContain('sandbox_snapshot_ignored_objects_total{kind="Pod"} 150');
    const ignoredLines = logs.lines.filter((l) => l.includes("ignored an object"));
    expect(ignoredLines).toHaveLength(150);
    expect(ignoredLines[0]).toContain("a-0000");
  });

  it("bounded lists read at most pageSize × pages objects, however many match", async () => {
    let calls = 0;
    const all = await paged({ pageSize: 50, pages: 4 }, (limit, cont) => {
      calls++;
      const start = Number(cont ?? "0");
      return Promise.resolve({ items: Array.from({ length: limit }, (_, i) => start + i), cont: String(start + limit) });
    });
    expect(all).toHaveLength(200);
    expect(calls).toBe(4);
  });

  it("reads a commit Job's Events as the client library returns them (Date objects), Warnings newest first; a failing list fails nothing", async () => {
    const kube = emptyKube({
      listPods: () => Promise.reject(new Error("boom")),
      listEvents: () =>
        Promise.resolve([
          { type: "Normal", reason: "SuccessfulCreate", message: "x", lastTimestamp: new Date("2026-11-29T10:00:09Z") },
          { type: "Warning", reason: "FailedCreate", message: "old", lastTimestamp: new Date("2026-11-29T10:00:02Z") },
          { type: "Warning", reason: "FailedCreate", message: "new", lastTimestamp: new Date("2026-11-29T10:00:08Z") },
        ]),
    });
    const out = await performSyncLookups(
      { source: false, pushSecret: undefined, commitPods: { uid: "u", selector: "batch.kubernetes.io/controller-uid=u" }, commitJobEvents: { name: "snap1-commit", uid: "u" } },
      snapshot(),
      kube,
    );
    expect(out.commitJobEvents?.map((e) => e.message)).toEqual(["new", "old", "x"]);
    expect(out.commitPodsError).toBe("boom");
  });
});
