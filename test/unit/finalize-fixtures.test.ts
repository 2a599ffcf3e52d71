// Every finalize path, from recorded fixtures (hooks/fixtures/finalize/): the request and the answer
// match the hook schemas, and today's answer to the request plus the registry's answers is the recorded one.
// Each case is also pinned by name below, so a re-recording cannot silently change behaviour.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { SandboxSnapshotStatus, SyncResponse } from "../../src/api/types.js";
import { validateSyncRequest, validateSyncResponse } from "../../src/api/validate.js";
import { FINALIZE_FIXTURES, replayFinalize, type FinalizeFixture } from "../support/finalize-fixtures.js";
import { cfg } from "../support/fixtures.js";

const files = readdirSync(FINALIZE_FIXTURES).filter((f) => f.endsWith(".json"));

function load(name: string): FinalizeFixture {
  return JSON.parse(readFileSync(new URL(`${name}.json`, FINALIZE_FIXTURES), "utf8")) as FinalizeFixture;
}

function replay(name: string): { fx: FinalizeFixture; res: SyncResponse; cleanup: SandboxSnapshotStatus["cleanup"] } {
  const fx = load(name);
  const { response } = replayFinalize(fx.request, cfg, new Date(fx.now), fx.registry, fx.lookups);
  return { fx, res: response, cleanup: response.status.cleanup };
}

/**
 * `finalized: true` comes only in a call whose status equals the stored one (Metacontroller removes
 * its finalizer before writing status): a call that reached Done/Abandoned answers false with a quick
 * resync, and the next call, over the status it wrote, finalizes without any registry call.
 */
function finalizesOnNextCall(fx: FinalizeFixture, res: SyncResponse): boolean {
  expect(res.finalized).toBe(false);
  expect(res.resyncAfterSeconds).toBe(1);
  const next = replayFinalize({ ...fx.request, parent: { ...fx.request.parent, status: res.status } }, cfg, new Date(fx.now), [], fx.lookups).response;
  expect(next.status).toEqual(res.status);
  return next.finalized === true;
}

describe("recorded finalize fixtures", () => {
  it("cover every deletion path", () => {
    for (const name of [
      "in-flight-commit-running-v1",
      "in-flight-commit-running-v2",
      "in-flight-commit-stopped",
      "source-pod-gone",
      "delete-succeed",
      "retain-explicit",
      "retain-batchsandbox-owned-default",
      "delete-batchsandbox-owned-explicit",
      "already-gone-404",
      "deletion-unsupported-405",
      "outage-first-attempt",
      "outage-before-next-attempt",
      "outage-second-attempt",
      "outage-recovered",
      "deadline-passed",
      "missing-digest-ours",
      "missing-digest-foreign",
    ]) {
      expect(files, name).toContain(`${name}.json`);
    }
  });

  it.each(files)("%s: request and answer match the hook schemas and the recording", (file) => {
    const fx = JSON.parse(readFileSync(new URL(file, FINALIZE_FIXTURES), "utf8")) as FinalizeFixture;
    expect(fx.hook).toBe("finalize");
    expect(fx.description.length).toBeGreaterThan(10);
    const v = validateSyncRequest(fx.request);
    expect(v.ok ? [] : v.errors).toEqual([]);
    expect(fx.request.finalizing).toBe(true);
    const { response } = replayFinalize(fx.request, cfg, new Date(fx.now), fx.registry, fx.lookups);
    const rv = validateSyncResponse(response);
    expect(rv.ok ? [] : rv.errors).toEqual([]);
    const recorded = validateSyncResponse(fx.response);
    expect(recorded.ok ? [] : recorded.errors).toEqual([]);
    expect(response).toEqual(fx.response);
  });
});

describe("finalize: a commit in flight", () => {
  it.each(["v1", "v2"])("drops the running commit Job and touches no registry while the committer may still push (%s keys)", (style) => {
    const { fx, res, cleanup } = replay(`in-flight-commit-running-${style}`);
    expect(fx.registry).toEqual([]);
    expect(res.children).toEqual([]);
    expect(res.finalized).toBe(false);
    expect(res.resyncAfterSeconds).toBeGreaterThan(0);
    expect(cleanup).toBeUndefined();
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")?.status).toBe("Unknown");
  });

  it("runs an unpause Job once the commit stopped, and cleans up the images pushed so far meanwhile", () => {
    const { res, cleanup } = replay("in-flight-commit-stopped");
    expect(res.children.map((j) => j.metadata.name)).toEqual(["snap1-unpause"]);
    expect(res.finalized).toBe(false);
    expect(cleanup?.state).toBe("Done");
  });

  it("needs no unpause Job when the source pod is gone, and finalizes after clean-up", () => {
    const { fx, res, cleanup } = replay("source-pod-gone");
    expect(res.children).toEqual([]);
    expect(res.status.conditions?.find((c) => c.type === "ContainersResumed")?.reason).toBe("SourceGone");
    expect(cleanup?.state).toBe("Done");
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });
});

describe("finalize: deletion policy", () => {
  it("Delete removes every recorded manifest by digest, then finalizes", () => {
    const { fx, res, cleanup } = replay("delete-succeed");
    expect(fx.registry.map((r) => r.ref)).toEqual([
      expect.stringMatching(/@sha256:a{64}$/),
      expect.stringMatching(/@sha256:c{64}$/),
    ]);
    expect(cleanup).toEqual({ state: "Done", attempts: 1, deletedDigests: [`sha256:${"a".repeat(64)}`, `sha256:${"c".repeat(64)}`] });
    expect(finalizesOnNextCall(fx, res)).toBe(true);
      });

  it("Retain keeps the images: no registry call, no clean-up status, finalized", () => {
    const { fx, res, cleanup } = replay("retain-explicit");
    expect(fx.registry).toEqual([]);
    expect(cleanup).toBeUndefined();
    expect(res.status.deletionPolicy).toBe("Retain");
    expect(res.finalized).toBe(true);
  });

  it("a BatchSandbox-owned snapshot without an explicit policy is retained", () => {
    const { fx, res } = replay("retain-batchsandbox-owned-default");
    expect(fx.request.parent.spec.deletionPolicy).toBeUndefined();
    expect(fx.registry).toEqual([]);
    expect(res.status.deletionPolicy).toBe("Retain");
    expect(res.finalized).toBe(true);
  });

  it("a BatchSandbox-owned snapshot with an explicit Delete is cleaned up", () => {
    const { fx, cleanup } = replay("delete-batchsandbox-owned-explicit");
    expect(fx.registry).toHaveLength(2);
    expect(fx.registry.every((r) => r.ref.includes("@sha256:"))).toBe(true);
    expect(cleanup?.state).toBe("Done");
  });

  it("a snapshot that pushed nothing is done without registry calls", () => {
    const { fx, res, cleanup } = replay("nothing-pushed");
    expect(fx.registry).toEqual([]);
    expect(cleanup).toEqual({ state: "Done", attempts: 0, deletedDigests: [] });
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });
});

describe("finalize: registry answers", () => {
  it("404 counts as deleted", () => {
    const { fx, res, cleanup } = replay("already-gone-404");
    expect(cleanup?.deletedDigests).toHaveLength(2);
    expect(cleanup?.state).toBe("Done");
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });

  it("405 (deletion disabled) abandons by rule, says so in status, and finalizes", () => {
    const { fx, res, cleanup } = replay("deletion-unsupported-405");
    expect(cleanup?.state).toBe("Abandoned");
    expect(cleanup?.lastError).toMatch(/405/);
    expect(cleanup?.nextAttemptTime).toBeUndefined();
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });

  it("an outage keeps what is still to delete, records the error and backs off 5 s", () => {
    const { fx, res, cleanup } = replay("outage-first-attempt");
    expect(cleanup).toMatchObject({ state: "Pending", attempts: 1, deletedDigests: [`sha256:${"a".repeat(64)}`] });
    expect(cleanup?.lastError).toContain("ECONNREFUSED");
    expect(Date.parse(cleanup?.nextAttemptTime ?? "") - Date.parse(fx.now)).toBe(5000);
    expect(res.resyncAfterSeconds).toBe(5);
    expect(res.finalized).toBe(false);
  });

  it("before the next attempt time the same request gets the identical status (fixpoint) and no registry call", () => {
    const first = replay("outage-first-attempt");
    const { fx, res } = replay("outage-before-next-attempt");
    expect(fx.registry).toEqual([]);
    expect(res.status).toEqual(first.res.status);
    expect(res.resyncAfterSeconds).toBe(2);
    // and again a second later: still identical
    const again = replayFinalize(fx.request, cfg, new Date(Date.parse(fx.now) + 1000), [], fx.lookups).response;
    expect(again.status).toEqual(first.res.status);
    expect(again.resyncAfterSeconds).toBe(1);
  });

  it("the second failed attempt tries only what is outstanding and doubles the backoff", () => {
    const { fx, res, cleanup } = replay("outage-second-attempt");
    expect(fx.registry.map((r) => r.ref)).toEqual([expect.stringMatching(/@sha256:c{64}$/)]);
    expect(cleanup?.attempts).toBe(2);
    expect(Date.parse(cleanup?.nextAttemptTime ?? "") - Date.parse(fx.now)).toBe(10_000);
    expect(res.resyncAfterSeconds).toBe(10);
  });

  it("once the registry is back the rest is deleted and the snapshot finalized", () => {
    const { fx, res, cleanup } = replay("outage-recovered");
    expect(cleanup?.state).toBe("Done");
    expect(cleanup?.attempts).toBe(3);
    expect(cleanup?.lastError).toBeUndefined();
    expect(cleanup?.deletedDigests).toHaveLength(2);
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });

  it("a call that ran out of time continues 1 s later without backoff", () => {
    const { res, cleanup } = replay("budget-exhausted");
    expect(cleanup?.state).toBe("Pending");
    expect(cleanup?.lastError).toBeUndefined();
    expect(res.resyncAfterSeconds).toBe(1);
  });

  it("past CLEANUP_DEADLINE_SECONDS a failing registry is abandoned and the snapshot finalized", () => {
    const { fx, res, cleanup } = replay("deadline-passed");
    expect(cleanup?.state).toBe("Abandoned");
    expect(cleanup?.lastError).toMatch(/CLEANUP_DEADLINE_SECONDS=3600/);
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });

  it("clean-up already done is not repeated", () => {
    const { fx, res } = replay("done-stored");
    expect(fx.registry).toEqual([]);
    expect(res.status.cleanup).toEqual(fx.request.parent.status?.cleanup);
    expect(res.finalized).toBe(true);
  });
});

describe("finalize: digest never recorded", () => {
  it("looks the tag up and deletes the manifest carrying this snapshot's UID", () => {
    const { fx, cleanup, res } = replay("missing-digest-ours");
    expect(fx.request.parent.status?.containers?.every((c) => c.imageDigest === undefined)).toBe(true);
    expect(fx.registry.map((r) => r.ref)).toEqual([expect.stringMatching(/:snap-[0-9a-f]{32}$/), expect.stringMatching(/:snap-[0-9a-f]{32}$/)]);
    expect(cleanup?.deletedDigests).toEqual([`sha256:${"a".repeat(64)}`]);
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });

  it("leaves a manifest without this snapshot's UID alone", () => {
    const { fx, cleanup, res } = replay("missing-digest-foreign");
    expect(cleanup?.deletedDigests).toEqual([]);
    expect(cleanup?.state).toBe("Done");
    expect(finalizesOnNextCall(fx, res)).toBe(true);
  });
});
