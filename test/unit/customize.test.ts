import { describe, expect, it } from "vitest";
import { validateCustomizeResponse } from "../../src/api/validate.js";
import { customize, customizeLookup } from "../../src/reconcile/customize.js";
import { snapshot } from "../support/fixtures.js";

const req = (spec: Parameters<typeof snapshot>[0], opts: Parameters<typeof snapshot>[1] = {}) => ({ parent: snapshot(spec, opts) });

describe("customize", () => {
  it("relates the BatchSandbox and its alloc-status pods and <name>-0 by name — nothing by label", () => {
    const res = customize(req({ sandboxName: "sbx" }), ["pool-3", "pool-4"]);
    expect(validateCustomizeResponse(res).ok).toBe(true);
    expect(res.relatedResources).toEqual([
      { apiVersion: "sandbox.opensandbox.io/v1alpha1", resource: "batchsandboxes", namespace: "sandboxes", names: ["sbx"] },
      { apiVersion: "v1", resource: "pods", namespace: "sandboxes", names: ["pool-3", "pool-4", "sbx-0"] },
    ]);
  });

  it("relates at most 16 alloc-status names (a BatchSandbox allocates one pod per replica)", () => {
    const many = Array.from({ length: 40 }, (_, i) => `pool-${i}`);
    const pods = customize(req({ sandboxName: "sbx" }), many).relatedResources.find((r) => r.resource === "pods");
    expect(pods?.names).toEqual([...many.slice(0, 16), "sbx-0"]);
  });

  it("relates the named Pod for spec.podName", () => {
    const res = customize(req({ podName: "p1" }));
    expect(res.relatedResources[0]).toEqual({ apiVersion: "v1", resource: "pods", namespace: "sandboxes", names: ["p1"] });
  });

  it("never mixes a label selector with namespace or names (Metacontroller rejects such rules)", () => {
    for (const spec of [{ sandboxName: "sbx" }, { podName: "p1" }]) {
      for (const rule of customize(req(spec), ["a"]).relatedResources) {
        if (rule.labelSelector) expect(rule.namespace === undefined && rule.names === undefined, JSON.stringify(rule)).toBe(true);
      }
    }
  });

  it("never selects every pod of the namespace", () => {
    for (const spec of [{ sandboxName: "sbx" }, { podName: "p1" }]) {
      for (const rule of customize(req(spec), ["a"]).relatedResources) {
        const selective = (rule.names?.length ?? 0) > 0 || Object.keys(rule.labelSelector?.matchLabels ?? {}).length > 0;
        expect(selective, JSON.stringify(rule)).toBe(true);
      }
    }
  });

  it("relates nothing once the snapshot succeeded", () => {
    expect(customize(req({ sandboxName: "sbx" }, { status: { phase: "Succeed" } })).relatedResources).toEqual([]);
    expect(customizeLookup(req({ sandboxName: "sbx" }, { status: { phase: "Succeed" } }))).toBeUndefined();
  });

  it("asks the shell to read the BatchSandbox only for sandboxName sources", () => {
    expect(customizeLookup(req({ sandboxName: "sbx" }))).toBe("sbx");
    expect(customizeLookup(req({ podName: "p1" }))).toBeUndefined();
  });
});
