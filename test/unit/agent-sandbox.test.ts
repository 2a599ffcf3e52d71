// An agent-sandbox Sandbox (spec.sandboxRef) as the snapshot source: which pod, when it is refused,
// a suspended Sandbox, the relations customize asks for, the direct look-up, and effective Retain.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { SyncRequest } from "../../src/api/types.js";
import { validateCustomizeResponse, validateSyncRequest, validateSyncResponse } from "../../src/api/validate.js";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { customizeAgentSandboxLookup } from "../../src/reconcile/agent-sandbox.js";
import { planCleanup } from "../../src/reconcile/cleanup.js";
import { customize } from "../../src/reconcile/customize.js";
import { effectiveDeletionPolicy } from "../../src/reconcile/policy.js";
import { planSyncLookups, sync } from "../../src/reconcile/sync.js";
import { startServer } from "../../src/server/app.js";
import type { KubeAccess } from "../../src/server/kube.js";
import { performSyncLookups } from "../../src/server/lookups.js";
import { agentSandbox, sandboxPod, sandboxRequest, sandboxSnapshot } from "../support/agent-sandbox-fixtures.js";
import { CREATED, cfg, snapshot, t0, t1, withStatus } from "../support/fixtures.js";
import { emptyKube } from "../support/fake-kube.js";

const later = (seconds: number): Date => new Date(Date.parse(CREATED) + seconds * 1000);

function run(req: SyncRequest, now = t0, lookups = {}) {
  const rv = validateSyncRequest(req);
  expect(rv.ok ? [] : rv.errors).toEqual([]);
  const res = sync(req, cfg, now, lookups);
  const v = validateSyncResponse(res);
  expect(v.ok ? [] : v.errors).toEqual([]);
  return res;
}

const ready = (res: ReturnType<typeof run>) => res.status.conditions?.find((c) => c.type === "Ready");
const failedCond = (res: ReturnType<typeof run>) => res.status.conditions?.find((c) => c.type === "Failed");
const commitArgs = (res: ReturnType<typeof run>): string[] =>
  (res.children[0]?.spec as { template: { spec: { containers: { args: string[] }[] } } }).template.spec.containers[0]?.args ?? [];

describe("agent-sandbox Sandbox source: which pod", () => {
  it("snapshots the pod named like the Sandbox when the Sandbox controls it; containers come from the pod", () => {
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb", "sandbox", { containers: ["main", "tools"] })] }));
    expect(res.status.phase).toBe("Committing");
    expect(res.status.sourcePodName).toBe("asb");
    expect(res.status.sourceNodeName).toBe("node-a");
    expect(res.status.containers?.map((c) => c.containerName)).toEqual(["main", "tools"]);
    // {source} is the Sandbox's name; the tag is the per-name one (no snap-gen for Sandboxes).
    expect(res.status.containers?.[0]?.imageUri).toMatch(/^registry\.example\.com\/snapshots\/.*asb.*main:snap-[0-9a-f]{32}$/);
    expect(commitArgs(res).slice(0, 2)).toEqual(["asb", "sandboxes"]);
  });

  it("follows the agents.x-k8s.io/pod-name annotation (a warm-pool pod) before the Sandbox's own name", () => {
    const res = run(
      sandboxRequest(sandboxSnapshot(), {
        sandboxes: [agentSandbox("asb", { podName: "pool-abc12" })],
        pods: [sandboxPod("asb"), sandboxPod("pool-abc12")],
      }),
    );
    expect(res.status.phase).toBe("Committing");
    expect(res.status.sourcePodName).toBe("pool-abc12");
    expect(commitArgs(res)[0]).toBe("pool-abc12");
  });

  it("ignores an annotation that is not a pod name", () => {
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { podName: "../Bad Name" })], pods: [sandboxPod("asb")] }));
    expect(res.status.sourcePodName).toBe("asb");
  });

  it("does not fall back to the own-name pod while the annotated pod is missing", () => {
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { podName: "pool-abc12" })], pods: [sandboxPod("asb")] }));
    expect(res.status.phase).toBe("Pending");
    expect(ready(res)).toMatchObject({ reason: "SourceNotFound" });
    expect(ready(res)?.message).toContain("has no pod pool-abc12 yet");
  });

  it.each([
    ["no ownerReference", "none"],
    ["a controller ownerReference with another UID", "other-uid"],
    ["a non-controller ownerReference to the Sandbox", "not-controller"],
    ["a controller of another kind", "other-kind"],
  ] as const)("refuses a pod with the Sandbox's name but %s (anyone can create such a pod)", (_n, owner) => {
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb", owner)] }));
    expect(res.status.phase).toBe("Pending");
    expect(res.children).toEqual([]);
    expect(ready(res)).toMatchObject({ status: "False", reason: "SourceNotOwned" });
    expect(ready(res)?.message).toMatch(/pod asb is not controlled by Sandbox asb \(spec\.sandboxRef\)/);
    // ... and after the deadline it fails with that reason rather than snapshotting it.
    const late = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb", owner)] }), later(301));
    expect(late.status.phase).toBe("Failed");
    expect(failedCond(late)).toMatchObject({ reason: "SourceNotOwned" });
  });

  it("refuses a Sandbox without a UID (nothing to compare the owner with)", () => {
    const sb = agentSandbox("asb");
    if (sb.metadata) delete sb.metadata.uid;
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [sb], pods: [sandboxPod("asb")] }));
    expect(ready(res)?.reason).toBe("SourceNotOwned");
  });

  it("waits for a Sandbox that does not exist yet, and for its pod", () => {
    const none = run(sandboxRequest(sandboxSnapshot()));
    expect(ready(none)).toMatchObject({ reason: "SourceNotFound", message: "Sandbox asb (spec.sandboxRef) does not exist" });
    expect(none.resyncAfterSeconds).toBe(10);
    const noPod = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")] }));
    expect(ready(noPod)).toMatchObject({ reason: "SourceNotFound", message: "Sandbox asb (spec.sandboxRef) has no pod asb yet" });
  });

  it("waits while the pod is not Running on a node or is being deleted", () => {
    const pending = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb", "sandbox", { phase: "Pending" })] }));
    expect(ready(pending)?.reason).toBe("SourceNotRunning");
    const p = sandboxPod("asb");
    if (p.metadata) p.metadata.deletionTimestamp = "2026-11-29T10:00:01Z";
    const deleting = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [p] }));
    expect(ready(deleting)?.message).toContain("being deleted");
  });

  it("ignores a Sandbox of another API group with the same kind and name", () => {
    const foreign = { ...agentSandbox("asb"), apiVersion: "example.com/v1" };
    const res = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [foreign], pods: [sandboxPod("asb")] }));
    expect(ready(res)?.reason).toBe("SourceNotFound");
  });
});

describe("agent-sandbox Sandbox source: suspended", () => {
  const suspendedReq = () => sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { operatingMode: "Suspended" })] });

  it("waits with a condition saying the Sandbox is suspended (operatingMode: Suspended), with a stable status", () => {
    const res = run(suspendedReq());
    expect(res.status.phase).toBe("Pending");
    expect(ready(res)).toMatchObject({ status: "False", reason: "SourceSuspended" });
    expect(ready(res)?.message).toBe("Sandbox asb (spec.sandboxRef) is suspended (spec.operatingMode is Suspended): it has no pod to snapshot until it runs again");
    const again = run(withStatus(suspendedReq(), res.status), t1);
    expect(again.status).toEqual(res.status);
  });

  it("is suspended even while its old pod still terminates (no new commit of a pod being removed)", () => {
    const req = sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { operatingMode: "Suspended" })], pods: [sandboxPod("asb")] });
    expect(ready(run(req))?.reason).toBe("SourceSuspended");
  });

  it("reads v1alpha1's replicas: 0 as suspended", () => {
    const req = sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { version: "v1alpha1", replicas: 0 })] });
    expect(ready(run(req))?.message).toContain("spec.replicas is 0");
    const running = sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb", { version: "v1alpha1", replicas: 1 })], pods: [sandboxPod("asb")] });
    expect(run(running).status.phase).toBe("Committing");
  });

  it("fails at the source deadline with reason SourceSuspended, naming the setting", () => {
    const res = run(suspendedReq(), later(301));
    expect(res.status.phase).toBe("Failed");
    expect(failedCond(res)).toMatchObject({ status: "True", reason: "SourceSuspended" });
    expect(failedCond(res)?.message).toContain("gave up after 300s (SOURCE_WAIT_SECONDS)");
  });

  it("proceeds once the Sandbox runs again with a pod it controls", () => {
    const waiting = run(suspendedReq());
    const resumed = withStatus(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb")] }), waiting.status);
    expect(run(resumed, t1).status.phase).toBe("Committing");
  });
});

describe("agent-sandbox Sandbox source: spec checks", () => {
  it.each([
    ["another apiGroup", { apiGroup: "example.com", kind: "Sandbox", name: "x" }, 'spec.sandboxRef: apiGroup "example.com" with kind "Sandbox" is not supported'],
    ["another kind", { apiGroup: "agents.x-k8s.io", kind: "SandboxClaim", name: "x" }, 'kind "SandboxClaim" is not supported (supported: apiGroup agents.x-k8s.io with kind Sandbox)'],
  ])("fails fast on %s, naming the field and what is supported", (_n, sandboxRef, message) => {
    const res = run(sandboxRequest(snapshot({ sandboxRef })));
    expect(res.status.phase).toBe("Failed");
    expect(failedCond(res)).toMatchObject({ reason: "InvalidSpec" });
    expect(failedCond(res)?.message).toContain(message);
  });

  it("fails fast when sandboxRef is combined with another source", () => {
    const res = run(sandboxRequest(snapshot({ podName: "p", sandboxRef: { apiGroup: "agents.x-k8s.io", kind: "Sandbox", name: "asb" } })));
    expect(failedCond(res)?.message).toBe("exactly one of spec.sandboxName, spec.podName or spec.sandboxRef must be set");
  });
});

describe("agent-sandbox Sandbox source: deletion policy", () => {
  it("is Retain by default when a Sandbox controls the snapshot (a resumed Sandbox runs from its images), shown in status", () => {
    const owned = sandboxSnapshot("asb", { owned: true });
    expect(effectiveDeletionPolicy(owned)).toBe("Retain");
    const res = run(sandboxRequest(owned, { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb")] }));
    expect(res.status.deletionPolicy).toBe("Retain");
    // No snap-gen tag for Sandbox owners: the per-name tag, so two snapshots never share a tag.
    expect(res.status.containers?.[0]?.imageUri).toMatch(/:snap-[0-9a-f]{32}$/);
  });

  it("is Delete when the Sandbox is only the source, and an explicit policy wins", () => {
    expect(effectiveDeletionPolicy(sandboxSnapshot("asb"))).toBe("Delete");
    expect(effectiveDeletionPolicy(sandboxSnapshot("asb", { owned: true, deletionPolicy: "Delete" }))).toBe("Delete");
  });

  it("plans no registry deletion for a deleted Sandbox-owned snapshot", () => {
    const committing = run(sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb")] })).status;
    const stored = { ...committing, phase: "Succeed" as const, deletionPolicy: undefined };
    delete stored.deletionPolicy;
    const req = { ...sandboxRequest(sandboxSnapshot("asb", { owned: true, status: stored, deleting: "2026-11-29T10:00:04Z" })), finalizing: true };
    const plan = planCleanup(req, cfg, t0);
    expect(plan.action).not.toBe("attempt");
    const owner = { ...req, parent: sandboxSnapshot("asb", { status: stored, deleting: "2026-11-29T10:00:04Z" }) };
    expect(planCleanup(owner, cfg, t0).action).toBe("attempt");
  });
});

describe("agent-sandbox Sandbox source: customize", () => {
  const parent = sandboxSnapshot();

  it("relates the Sandbox and its one pod by name only, in the configured version", () => {
    const res = customize({ parent }, [], { version: "v1beta1", annotatedPod: "pool-abc12" });
    expect(validateCustomizeResponse(res).ok).toBe(true);
    expect(res.relatedResources).toEqual([
      { apiVersion: "agents.x-k8s.io/v1beta1", resource: "sandboxes", namespace: "sandboxes", names: ["asb"] },
      { apiVersion: "v1", resource: "pods", namespace: "sandboxes", names: ["pool-abc12"] },
    ]);
    const old = customize({ parent }, [], { version: "v1alpha1" });
    expect(old.relatedResources.slice(0, 2)).toEqual([
      { apiVersion: "agents.x-k8s.io/v1alpha1", resource: "sandboxes", namespace: "sandboxes", names: ["asb"] },
      { apiVersion: "v1", resource: "pods", namespace: "sandboxes", names: ["asb"] },
    ]);
  });

  it("asks the shell to read the Sandbox until the snapshot succeeded; relates nothing after", () => {
    expect(customizeAgentSandboxLookup(parent)).toBe("asb");
    const done = sandboxSnapshot("asb", { status: { phase: "Succeed" } });
    expect(customizeAgentSandboxLookup(done)).toBeUndefined();
    expect(customize({ parent: done }).relatedResources).toEqual([]);
    expect(customizeAgentSandboxLookup(snapshot({ podName: "p1" }))).toBeUndefined();
  });
});

describe("agent-sandbox Sandbox source: the shell's direct look-up", () => {
  const fakeKube = (calls: string[]): KubeAccess => emptyKube({
    getAgentSandbox: (ns, name, version) => {
      calls.push(`sandbox ${ns}/${name} ${version}`);
      return Promise.resolve(name === "asb" ? agentSandbox("asb", { podName: "pool-late" }) : undefined);
    },
    getBatchSandbox: () => Promise.reject(new Error("not expected")),
    getPod: (ns, name) => {
      calls.push(`pod ${ns}/${name}`);
      return Promise.resolve(name === "pool-late" ? sandboxPod("pool-late") : undefined);
    },
  });

  it("GETs the Sandbox in the configured version and the pod it names, and sync uses them", async () => {
    const old = loadConfig({ SNAPSHOT_REGISTRY: "registry.example.com/snapshots", AGENT_SANDBOX_API_VERSION: "v1alpha1" });
    const req = sandboxRequest(sandboxSnapshot());
    const plan = planSyncLookups(req, old);
    expect(plan).toEqual({ source: true, pushSecret: undefined, agentSandboxVersion: "v1alpha1" });
    const calls: string[] = [];
    const lookups = await performSyncLookups(plan, req.parent, fakeKube(calls));
    expect(calls).toEqual(["sandbox sandboxes/asb v1alpha1", "pod sandboxes/pool-late"]);
    const res = run(req, t0, lookups);
    expect(res.status.phase).toBe("Committing");
    expect(res.status.sourcePodName).toBe("pool-late");
  });

  it("plans no look-up once a Running controlled pod is related", () => {
    const req = sandboxRequest(sandboxSnapshot(), { sandboxes: [agentSandbox("asb")], pods: [sandboxPod("asb")] });
    expect(planSyncLookups(req, cfg).source).toBe(false);
  });

  it("GETs no pod when the Sandbox does not exist", async () => {
    const calls: string[] = [];
    const req = sandboxRequest(sandboxSnapshot("gone"));
    const lookups = await performSyncLookups(planSyncLookups(req, cfg), req.parent, fakeKube(calls));
    expect(calls).toEqual(["sandbox sandboxes/gone v1beta1"]);
    expect(ready(run(req, t0, lookups))?.reason).toBe("SourceNotFound");
  });
});

describe("AGENT_SANDBOX_API_VERSION", () => {
  it("defaults to v1beta1 and refuses anything but v1beta1 or v1alpha1, naming the setting", () => {
    expect(cfg.agentSandboxVersion).toBe("v1beta1");
    expect(() => loadConfig({ AGENT_SANDBOX_API_VERSION: "v1" })).toThrow(ConfigError);
    expect(() => loadConfig({ AGENT_SANDBOX_API_VERSION: "v1" })).toThrow(/AGENT_SANDBOX_API_VERSION/);
  });
});

describe("agent-sandbox Sandbox source: the customize shell", () => {
  it("reads the Sandbox (configured version) and relates the pod its annotation names; without it, the own-name pod", async () => {
    const config = loadConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0", SNAPSHOT_REGISTRY: "registry.example.com/snapshots" });
    const calls: string[] = [];
    let answer: "annotated" | "missing" | "error" = "annotated";
    const kube = emptyKube({
      getAgentSandbox: (ns, name, version) => {
        calls.push(`${ns}/${name} ${version}`);
        if (answer === "error") return Promise.reject(new Error("connection refused"));
        return Promise.resolve(answer === "annotated" ? agentSandbox(name, { podName: "pool-xyz" }) : undefined);
      },
      getBatchSandbox: () => Promise.reject(new Error("not expected")),
    });
    const server = await startServer(config, { log: pino({ level: "silent" }), kube, clock: () => t0 });
    try {
      const ask = async () => {
        const res = await fetch(`http://127.0.0.1:${server.hookPort}/customize`, {
          method: "POST",
          body: JSON.stringify({ parent: sandboxSnapshot() }),
          headers: { "content-type": "application/json" },
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { relatedResources: { resource: string; names?: string[] }[] };
        return body.relatedResources.filter((r) => r.names !== undefined).map((r) => `${r.resource}:${(r.names ?? []).join(",")}`);
      };
      expect(await ask()).toEqual(["sandboxes:asb", "pods:pool-xyz"]);
      expect(calls).toEqual(["sandboxes/asb v1beta1"]);
      answer = "missing";
      expect(await ask()).toEqual(["sandboxes:asb", "pods:asb"]);
      answer = "error"; // the API is down: still an answer, with the own-name pod
      expect(await ask()).toEqual(["sandboxes:asb", "pods:asb"]);
    } finally {
      await server.close();
    }
  });
});
