import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { imageReference, snapshotTag } from "../../src/reconcile/image-ref.js";
import { effectiveDeletionPolicy } from "../../src/reconcile/policy.js";
import { allocStatus, resolveSource } from "../../src/reconcile/source.js";
import { sync } from "../../src/reconcile/sync.js";
import { batchSandbox, cfg, pod, request, sandboxPod, snapshot, t0 } from "../support/fixtures.js";

describe("image tags (OpenSandbox rules)", () => {
  it("uses snap-gen<generation> of the owning BatchSandbox", () => {
    expect(snapshotTag(snapshot({ sandboxName: "sbx" }, { owner: "BatchSandbox" }), 7)).toBe("snap-gen7");
  });

  it("takes the hex of a name of the form osb-snap-<32 hex>", () => {
    const hex = "0123456789abcdef0123456789abcdef";
    expect(snapshotTag(snapshot({ sandboxName: "sbx" }, { name: `osb-snap-${hex}` }), undefined)).toBe(`snap-${hex}`);
  });

  it("hashes any other name: snap- + first 32 hex of sha256(name)", () => {
    const expected = createHash("sha256").update("my-snapshot").digest("hex").slice(0, 32);
    expect(snapshotTag(snapshot({ sandboxName: "sbx" }, { name: "my-snapshot" }), undefined)).toBe(`snap-${expected}`);
  });

  it.each([
    ["osb-snap-0123456789ABCDEF0123456789abcdef", "uppercase hex"],
    ["osb-snap-0123", "too short"],
    ["osb-snap-0123456789abcdef0123456789abcdef0", "too long"],
  ])("does not take the osb form for %s (%s)", (name) => {
    expect(snapshotTag(snapshot({ sandboxName: "sbx" }, { name }), undefined)).toBe(
      `snap-${createHash("sha256").update(name).digest("hex").slice(0, 32)}`,
    );
  });

  it("names the generation of the BatchSandbox in the image reference when it owns the snapshot", () => {
    const res = sync(
      request(snapshot({ sandboxName: "sbx" }, { owner: "BatchSandbox" }), { pods: [sandboxPod("sbx-0")], batchSandboxes: [batchSandbox("sbx", { generation: 4 })] }),
      cfg,
      t0,
    );
    expect(res.status.containers?.[0]?.imageUri).toBe("registry.example.com/snapshots/sandboxes/sbx/sandbox:snap-gen4");
  });

  it("builds repositories from the template with namespace, source and container", () => {
    expect(
      imageReference("{registry}/{namespace}/{source}-{container}", { registry: "r.io:5000/x", namespace: "ns1", source: "sbx", container: "main" }, "snap-gen1"),
    ).toEqual({ ok: true, ref: "r.io:5000/x/ns1/sbx-main:snap-gen1" });
  });

  it("rejects a repository that is not a valid OCI name", () => {
    const r = imageReference("{registry}/{source}-{container}", { registry: "r.io", namespace: "n", source: "a..b", container: "c" }, "t");
    expect(r.ok).toBe(false);
  });
});

describe("source pod resolution order", () => {
  const snap = snapshot({ sandboxName: "sbx" });
  const resolve = (pods: ReturnType<typeof pod>[], allocPods?: string[] | string) =>
    resolveSource(snap, pods, [batchSandbox("sbx", allocPods !== undefined ? { allocPods } : {})]);
  const label = { "batch-sandbox.sandbox.opensandbox.io/name": "sbx" };

  it("prefers the alloc-status pods (pool-allocated pods carry no label)", () => {
    const r = resolve([pod("sbx-0"), pod("labelled", { labels: label }), pod("pool-1")], ["pool-1"]);
    expect(r.found && r.pod.metadata?.name).toBe("pool-1");
  });

  it("takes the first Running alloc-status pod", () => {
    const r = resolve([pod("pool-1", { phase: "Pending" }), pod("pool-2")], ["pool-1", "pool-2"]);
    expect(r.found && r.pod.metadata?.name).toBe("pool-2");
  });

  it("falls back to pods with the BatchSandbox label that the BatchSandbox controls", () => {
    const r = resolve([sandboxPod("sbx-0"), sandboxPod("labelled", { labels: label })]);
    expect(r.found && r.pod.metadata?.name).toBe("labelled");
  });

  it("falls back to <name>-0 when the BatchSandbox controls it", () => {
    const r = resolve([sandboxPod("sbx-0"), pod("unrelated")]);
    expect(r.found && r.pod.metadata?.name).toBe("sbx-0");
  });

  it("ignores labelled pods and <name>-0 that the BatchSandbox does not control", () => {
    const r = resolve([pod("sbx-0"), pod("labelled", { labels: label })]);
    expect(r.found).toBe(false);
    expect((r.ignored ?? []).map((i) => i.name).sort()).toEqual(["labelled", "sbx-0"]);
  });

  it("ignores a pod that is being deleted", () => {
    const p = sandboxPod("sbx-0");
    if (p.metadata) p.metadata.deletionTimestamp = "2026-11-29T10:00:00Z";
    expect(resolve([p]).found).toBe(false);
  });

  it("names the broken alloc-status annotation and still falls back", () => {
    expect(allocStatus(batchSandbox("sbx", { allocPods: "{not json" })).error).toContain('metadata.annotations["sandbox.opensandbox.io/alloc-status"]');
    expect(allocStatus(batchSandbox("sbx", { allocPods: '{"pods":"x"}' })).error).toContain(".pods must be a list");
    const ok = resolve([sandboxPod("sbx-0")], "{not json");
    expect(ok.found).toBe(true);
    const missing = resolve([], "{not json");
    expect(!missing.found && missing.message).toContain("is not valid JSON");
  });

  it("says the BatchSandbox does not exist", () => {
    const r = resolveSource(snap, [], []);
    expect(!r.found && r.message).toContain("BatchSandbox sbx (spec.sandboxName) does not exist");
  });
});

describe("effective deletion policy", () => {
  it.each([
    ["explicit Retain", snapshot({ podName: "p", deletionPolicy: "Retain" }), "Retain"],
    ["explicit Delete on a BatchSandbox-owned snapshot", snapshot({ sandboxName: "s", deletionPolicy: "Delete" }, { owner: "BatchSandbox" }), "Delete"],
    ["BatchSandbox-owned, unset", snapshot({ sandboxName: "s" }, { owner: "BatchSandbox" }), "Retain"],
    ["no owner, unset", snapshot({ sandboxName: "s" }), "Delete"],
  ])("%s → %s", (_n, snap, expected) => {
    expect(effectiveDeletionPolicy(snap)).toBe(expected);
  });

  it("is recorded in status", () => {
    const res = sync(request(snapshot({ sandboxName: "s" }, { owner: "BatchSandbox" })), cfg, t0);
    expect(res.status.deletionPolicy).toBe("Retain");
  });
});
