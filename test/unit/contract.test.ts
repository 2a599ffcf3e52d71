// Every recorded fixture is a valid hook request, today's answer to it is a valid hook response, and
// the answer has not changed since it was recorded (scripts/record-fixtures.ts).
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { CustomizeRequest, SyncRequest } from "../../src/api/types.js";
import { validateCustomizeRequest, validateCustomizeResponse, validateSyncRequest, validateSyncResponse } from "../../src/api/validate.js";
import { customize, type AgentSandboxCustomize } from "../../src/reconcile/customize.js";
import { finalize, type FinalizeLookups } from "../../src/reconcile/finalize.js";
import { sync, type SyncLookups } from "../../src/reconcile/sync.js";
import { cfg } from "../support/fixtures.js";

const dir = new URL("../../hooks/fixtures/", import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith(".json") && !f.includes("/"));

interface Fixture {
  hook: "sync" | "finalize" | "customize";
  now?: string;
  request: unknown;
  response: unknown;
  allocPods?: string[];
  /** What the customize shell read of a spec.sandboxRef Sandbox. */
  agentSandbox?: AgentSandboxCustomize;
  /** What the shell read before the call: registry checks for sync, API look-ups for finalize. */
  lookups?: SyncLookups | FinalizeLookups;
}

describe("recorded hook fixtures", () => {
  it("cover every phase and both key styles", () => {
    for (const phase of ["pending", "committing", "failed", "succeed"]) {
      for (const style of ["v1", "v2"]) {
        expect(files.some((f) => f.startsWith(`sync-${phase}`) && f.endsWith(`-${style}.json`)), `${phase} ${style}`).toBe(true);
      }
    }
    expect(files.some((f) => f.startsWith("finalize-"))).toBe(true);
    expect(files.some((f) => f.startsWith("customize-"))).toBe(true);
  });

  it.each(files)("%s: request and answer match the hook schemas and the recording", (file) => {
    const fx = JSON.parse(readFileSync(new URL(file, dir), "utf8")) as Fixture;
    if (fx.hook === "customize") {
      const v = validateCustomizeRequest(fx.request);
      expect(v.ok ? [] : v.errors).toEqual([]);
      const res = customize(fx.request as CustomizeRequest, fx.allocPods ?? [], fx.agentSandbox);
      expect(validateCustomizeResponse(res).ok).toBe(true);
      expect(validateCustomizeResponse(fx.response).ok).toBe(true);
      expect(res).toEqual(fx.response);
      return;
    }
    const v = validateSyncRequest(fx.request);
    expect(v.ok ? [] : v.errors).toEqual([]);
    const now = new Date(fx.now ?? "");
    const req = fx.request as SyncRequest;
    const res = fx.hook === "sync" ? sync(req, cfg, now, fx.lookups ?? {}) : finalize(req, cfg, now, undefined, fx.lookups);
    const rv = validateSyncResponse(res);
    expect(rv.ok ? [] : rv.errors).toEqual([]);
    expect(validateSyncResponse(fx.response).ok).toBe(true);
    expect(res).toEqual(fx.response);
  });
});

describe("hook schema validation", () => {
  it.each([
    ["a parent without spec", { parent: { metadata: { name: "x" } }, children: {} }, "/parent"],
    ["a wrong type", { parent: { metadata: { name: "x" }, spec: { podName: 7 } }, children: {} }, "/parent/spec/podName"],
    ["an unknown phase in a stored status", { parent: { metadata: { name: "x" }, spec: { podName: "p" }, status: { phase: "Paused" } }, children: {} }, "/parent/status/phase"],
    ["children that are not a map", { parent: { metadata: { name: "x" }, spec: { podName: "p" } }, children: [] }, "/children"],
    ["a bad deletionPolicy", { parent: { metadata: { name: "x" }, spec: { podName: "p", deletionPolicy: "Keep" } }, children: {} }, "/parent/spec/deletionPolicy"],
  ])("rejects %s, naming the path", (_n, body, path) => {
    const v = validateSyncRequest(body);
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.errors.map((e) => e.path)).toContain(path);
  });

  it("rejects a response with unknown fields (v2 hooks parse strictly)", () => {
    expect(validateSyncResponse({ status: {}, children: [], extra: 1 }).ok).toBe(false);
  });
});
