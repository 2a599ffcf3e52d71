// A related Pod is only a KubeObject in the request schema; the core reads its containers and node.
// A malformed one (found by the hook fuzzing in test/integration/reliability-fuzz-hooks.test.ts) made
// the response fail the response schema: HTTP 500. It must be a 400 naming the field.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Pod } from "../../src/api/types.js";
import { loadConfig } from "../../src/config/config.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { batchSandbox, pod, request, snapshot, t0 } from "../support/fixtures.js";

const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe("hook server: related Pods are validated", () => {
  it.each([
    ["a container without a name", (p: Pod) => ({ ...p, spec: { ...p.spec, containers: [{ name: "sandbox" }, { image: "x" }] } }), "/spec/containers/1"],
    ["a node name that is not a string", (p: Pod) => ({ ...p, spec: { ...p.spec, nodeName: 7 } }), "/spec/nodeName"],
    ["a container name that is a number", (p: Pod) => ({ ...p, spec: { ...p.spec, containers: [{ name: 1 }] } }), "/spec/containers/0/name"],
  ])("answers 400, not 500, for a related Pod with %s", async (_name, breakPod, path) => {
    server = await startServer(config, { log: pino({ level: "silent" }), clock: () => t0 });
    const url = `http://127.0.0.1:${server.hookPort}`;
    const good = request(snapshot(), { pods: [pod("sbx-0")], batchSandboxes: [batchSandbox("sbx")] });
    const bad = JSON.parse(JSON.stringify(good)) as { related: Record<string, Record<string, Pod>> };
    const pods = bad.related["Pod.v1"] ?? {};
    pods["sbx-0"] = breakPod(pods["sbx-0"] as Pod) as Pod;
    for (const hook of ["sync", "finalize"]) {
      const res = await fetch(`${url}/${hook}`, { method: "POST", body: JSON.stringify(bad), headers: { "content-type": "application/json" } });
      const body = (await res.json()) as { errors?: { path: string }[] };
      expect(res.status).toBe(400);
      expect(body.errors?.[0]?.path).toBe(`/related/Pod.v1/sbx-0${path}`);
    }
    const ok = await fetch(`${url}/sync`, { method: "POST", body: JSON.stringify(good), headers: { "content-type": "application/json" } });
    expect(ok.status).toBe(200);
  });
});
