import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { BatchSandbox } from "../../src/api/types.js";
import { validateCustomizeResponse, validateSyncResponse } from "../../src/api/validate.js";
import { loadConfig } from "../../src/config/config.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import type { KubeAccess } from "../../src/server/kube.js";
import { batchSandbox, pod, request, sandboxPod, snapshot, t0 } from "../support/fixtures.js";
import { emptyKube } from "../support/fake-kube.js";
import { LogCapture } from "../support/log-capture.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(kube?: KubeAccess): Promise<{ url: string; metricsUrl: string; logs: LogCapture }> {
  const logs = new LogCapture();
  // The hooks take their clock from the test: the fixtures' snapshots are created at a fixed time.
  server = await startServer(config, { log: pino({ level: "debug" }, logs), kube, clock: () => t0 });
  return { url: `http://127.0.0.1:${server.hookPort}`, metricsUrl: `http://127.0.0.1:${server.metricsPort}`, logs };
}

const post = (url: string, body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
  fetch(url, { method: "POST", body, headers });

describe("hook server", () => {
  it("answers a sync with a schema-valid response", async () => {
    const { url } = await start();
    const req = request(snapshot(), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] });
    const res = await post(`${url}/sync`, JSON.stringify(req));
    expect(res.status).toBe(200);
    const body: unknown = await res.json();
    expect(validateSyncResponse(body).ok).toBe(true);
    expect((body as { status: { phase: string } }).status.phase).toBe("Committing");
  });

  it("answers customize and finalize", async () => {
    const { url } = await start();
    const c = await post(`${url}/customize`, JSON.stringify({ parent: snapshot() }));
    expect(c.status).toBe(200);
    expect(validateCustomizeResponse(await c.json()).ok).toBe(true);
    const deleted = { ...request(snapshot({ podName: "p1" }, { deleting: "2026-11-29T10:00:00Z" })), finalizing: true };
    const f = await post(`${url}/finalize`, JSON.stringify(deleted));
    expect(f.status).toBe(200);
    // This call wrote the effective deletion policy; the next one, over that stored status, finalizes.
    const first = (await f.json()) as { finalized: boolean; status: object };
    expect(first.finalized).toBe(false);
    const again = await post(`${url}/finalize`, JSON.stringify({ ...deleted, parent: { ...deleted.parent, status: first.status } }));
    expect(((await again.json()) as { finalized: boolean }).finalized).toBe(true);
  });

  it.each([
    ["malformed JSON", "{bad", "request body is not valid JSON"],
    ["a JSON array", "[]", "does not match the hook schema"],
    ["a wrong type", JSON.stringify({ parent: { metadata: {}, spec: { podName: 1 } }, children: {} }), "does not match the hook schema"],
    ["null", "null", ""],
    ["an empty body", "", ""],
  ])("answers 400 with the errors for %s, and keeps serving", async (_n, body, message) => {
    const { url } = await start();
    const res = await post(`${url}/sync`, body);
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { error: string; errors?: unknown[] };
    expect(answer.error).toContain(message);
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
  });

  it("names the invalid field in the 400 body", async () => {
    const { url } = await start();
    const res = await post(`${url}/sync`, JSON.stringify({ parent: { metadata: { name: "x" }, spec: { podName: "p", deletionPolicy: "Keep" } }, children: {} }));
    const answer = (await res.json()) as { errors: { path: string; message: string }[] };
    expect(answer.errors).toContainEqual({ path: "/parent/spec/deletionPolicy", message: "must be equal to one of the allowed values (Delete, Retain)" });
  });

  it("accepts JSON without a content type (Metacontroller sets one, curl may not)", async () => {
    const { url } = await start();
    const res = await post(`${url}/customize`, JSON.stringify({ parent: snapshot() }), {});
    expect(res.status).toBe(200);
  });

  it("answers 413 for a body over the limit", async () => {
    const { url } = await start();
    const res = await post(`${url}/sync`, JSON.stringify({ pad: "x".repeat(5 * 1024 * 1024) }));
    expect(res.status).toBe(413);
  });

  it("answers 404 for unknown paths and methods", async () => {
    const { url } = await start();
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/sync`)).status).toBe(404);
  });

  it("serves health and readiness on the hook port, metrics only on the metrics port", async () => {
    const { url, metricsUrl } = await start();
    expect(await (await fetch(`${url}/healthz`)).text()).toBe("ok");
    expect(await (await fetch(`${url}/readyz`)).text()).toBe("ok");
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    await post(`${url}/sync`, "{bad");
    await post(`${url}/sync`, JSON.stringify(request(snapshot(), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] })));
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    expect(text).toContain('sandbox_snapshot_hook_requests_total{hook="sync",outcome="invalid"} 1');
    expect(text).toContain('sandbox_snapshot_hook_requests_total{hook="sync",outcome="ok"} 1');
    expect(text).toContain('sandbox_snapshot_phase_transitions_total{from="none",to="Committing"} 1');
    expect(text).toMatch(/sandbox_snapshot_hook_duration_seconds_count\{hook="sync"\} 1/);
  });

  it("puts a request id in every log line of a request and echoes it", async () => {
    const { url, logs } = await start();
    const res = await post(`${url}/sync`, "{bad", { "content-type": "application/json", "x-request-id": "req-123" });
    expect(res.headers.get("x-request-id")).toBe("req-123");
    const lines = logs.lines.map((l) => JSON.parse(l) as { reqId?: string });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => l.reqId === "req-123")).toBe(true);
  });

  it("finishes in-flight requests on shutdown, then refuses new ones", async () => {
    let release: () => void = () => undefined;
    const slow = emptyKube({
      getBatchSandbox: () =>
        new Promise<BatchSandbox | undefined>((resolve) => {
          release = () => {
            resolve(undefined);
          };
        }),
    });
    const { url } = await start(slow);
    const inFlight = post(`${url}/sync`, JSON.stringify(request(snapshot())));
    await new Promise((r) => setTimeout(r, 100));
    const s = server;
    server = undefined;
    const closing = s?.close();
    await new Promise((r) => setTimeout(r, 50));
    release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { status: { phase: string } }).status.phase).toBe("Pending");
    await closing;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it("uses the direct look-up results when the related objects miss the source", async () => {
    const kube = emptyKube({
      getBatchSandbox: (_ns, name) => Promise.resolve(batchSandbox(name, { allocPods: ["pool-9"] })),
      getPod: (_ns, name) => Promise.resolve(name === "pool-9" ? pod("pool-9") : undefined),
    });
    const { url } = await start(kube);
    const res = await post(`${url}/sync`, JSON.stringify(request(snapshot())));
    const body = (await res.json()) as { status: { phase: string; sourcePodName: string } };
    expect(body.status).toMatchObject({ phase: "Committing", sourcePodName: "pool-9" });
  });

  it("emits one Event per transition with a deterministic name, and a failing Event API never fails the hook", async () => {
    const names: string[] = [];
    const kube = emptyKube({
      createEvent: (_ns, ev) => {
        names.push((ev.metadata as { name: string }).name);
        return Promise.reject(new Error("boom"));
      },
    });
    const { url } = await start(kube);
    const body = JSON.stringify(request(snapshot(), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] }));
    expect((await post(`${url}/sync`, body)).status).toBe(200);
    expect((await post(`${url}/sync`, body)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 20));
    expect(names).toHaveLength(2);
    expect(names[0]).toBe(names[1]);
  });
});

describe("start-up", () => {
  it.each([
    ["SNAPSHOT_COMPRESSION", "lz4"],
    ["HOOK_LISTEN_ADDRESS", "nowhere"],
  ])("stops with a message naming %s when it is invalid", (setting, value) => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
      cwd: root,
      env: { ...process.env, [setting]: value, KUBECONFIG: "" },
      encoding: "utf8",
      // tsx compiles the server on start: tens of seconds on a loaded 2-core machine
      timeout: 120_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`invalid setting ${setting}`);
  }, 150_000);
});
