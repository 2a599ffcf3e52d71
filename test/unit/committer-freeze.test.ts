import { describe, expect, it } from "vitest";
import { ContainerdClient, ContainerdError } from "../../src/containerd/client.js";
import { GrpcStatus } from "../../src/containerd/grpc.js";
import type { Lease, ProcessStatus } from "../../src/containerd/types.js";
import { Freezer, FreezeBroken, thawAll, WatchdogExpired } from "../../src/committer/freeze.js";
import { FreezeOwnership, judge, recordId, recordLabels, RECORD_MARGIN_MS } from "../../src/committer/ownership.js";

/** A containerd stand-in holding task states; pause/resume may be slowed or made to fail. */
class FakeTasks {
  readonly state = new Map<string, ProcessStatus>();
  /** containerd's leases: create is atomic (ALREADY_EXISTS), as in its bolt database. */
  readonly leases = new Map<string, Record<string, string>>();
  /** Called inside createLease before the check (to interleave two commits). */
  onCreate: ((id: string) => Promise<void> | void) | undefined;
  pauseDelayMs = new Map<string, number>();
  failPause = new Set<string>();
  constructor(ids: string[]) {
    for (const id of ids) this.state.set(id, "RUNNING");
  }
  client(): ContainerdClient {
    const fake = {
      pause: async (id: string): Promise<void> => {
        await new Promise((r) => setTimeout(r, this.pauseDelayMs.get(id) ?? 1));
        if (this.failPause.has(id)) throw new ContainerdError("Tasks.Pause", GrpcStatus.UNKNOWN, `cannot pause ${id}`);
        if (this.state.get(id) === "PAUSED") throw new ContainerdError("Tasks.Pause", GrpcStatus.FAILED_PRECONDITION, "already paused");
        this.state.set(id, "PAUSED");
      },
      resume: async (id: string): Promise<void> => {
        await new Promise((r) => setTimeout(r, 1));
        if (this.state.get(id) !== "PAUSED") throw new ContainerdError("Tasks.Resume", GrpcStatus.FAILED_PRECONDITION, "not paused");
        this.state.set(id, "RUNNING");
      },
      taskStatus: (id: string): Promise<ProcessStatus | undefined> => Promise.resolve(this.state.get(id)),
      createLease: async (id: string, labels: Record<string, string>): Promise<void> => {
        await this.onCreate?.(id);
        if (this.leases.has(id)) throw new ContainerdError("Leases.Create", GrpcStatus.ALREADY_EXISTS, `lease ${id}: already exists`);
        this.leases.set(id, labels);
      },
      deleteLease: (id: string): Promise<void> => {
        this.leases.delete(id);
        return Promise.resolve();
      },
      listLeases: (filters: string[]): Promise<Lease[]> => {
        const ids = filters.map((f) => f.replace(/^id==/, ""));
        return Promise.resolve(
          [...this.leases].filter(([id]) => ids.includes(id)).map(([id, labels]) => ({ id, labels: { ...labels }, created_at: null })),
        );
      },
    };
    return fake as unknown as ContainerdClient;
  }
  all(): ProcessStatus[] {
    return [...this.state.values()];
  }
}

describe("Freezer", () => {
  it("pauses every container, then resumes them all and measures the freeze", async () => {
    const t = new FakeTasks(["a", "b", "c"]);
    const f = new Freezer(t.client(), ["a", "b", "c"], 10_000);
    await f.freeze();
    expect(t.all()).toEqual(["PAUSED", "PAUSED", "PAUSED"]);
    await new Promise((r) => setTimeout(r, 20));
    await f.thaw();
    expect(t.all()).toEqual(["RUNNING", "RUNNING", "RUNNING"]);
    expect(f.freezeMillis).toBeGreaterThanOrEqual(19);
    await f.thaw(); // idempotent
  });

  it("resumes the ones it paused when another cannot be paused, and reports the failure", async () => {
    const t = new FakeTasks(["a", "b"]);
    t.failPause.add("b");
    const f = new Freezer(t.client(), ["a", "b"], 10_000);
    await expect(f.freeze()).rejects.toThrow(/cannot pause b/);
    expect(t.all()).toEqual(["RUNNING", "RUNNING"]);
  });

  it("refuses a container someone else paused, pauses nothing and leaves it paused", async () => {
    const t = new FakeTasks(["a", "b"]);
    t.state.set("b", "PAUSED"); // e.g. `ctr tasks pause`
    const f = new Freezer(t.client(), ["a", "b"], 10_000, () => undefined, { names: new Map([["b", "main"]]) });
    await expect(f.freeze()).rejects.toThrow(/container main is paused, not by a commit .*left paused/);
    await f.thaw();
    expect(t.all()).toEqual(["RUNNING", "PAUSED"]);
    expect(t.leases.size).toBe(0);
  });

  it("the watchdog resumes by itself and aborts the capture's signal", async () => {
    const t = new FakeTasks(["a"]);
    const logs: string[] = [];
    const f = new Freezer(t.client(), ["a"], 50, (m) => logs.push(m));
    await f.freeze();
    await new Promise((r) => setTimeout(r, 120));
    expect(t.all()).toEqual(["RUNNING"]);
    expect(f.signal.aborted).toBe(true);
    expect(f.signal.reason).toBeInstanceOf(WatchdogExpired);
    expect(logs.join()).toMatch(/watchdog/);
  });

  it("a thaw during a slow pause (a signal arriving mid-freeze) still leaves nothing paused", async () => {
    const t = new FakeTasks(["a", "b"]);
    t.pauseDelayMs.set("b", 80);
    const f = new Freezer(t.client(), ["a", "b"], 10_000);
    const freezing = f.freeze();
    // Attach the expectation first: the rejection arrives while thawAll() is awaited.
    const rejected = expect(freezing).rejects.toThrow(/resumed while they were being paused/);
    await new Promise((r) => setTimeout(r, 10));
    await thawAll(); // what the SIGTERM handler does
    await rejected;
    expect(t.all()).toEqual(["RUNNING", "RUNNING"]);
  });

  it("records the freeze in containerd while frozen (owner, token, release time) and deletes the record after the resume", async () => {
    const t = new FakeTasks(["a"]);
    const f = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-1", now: () => 1_000_000 });
    await f.freeze();
    const labels = t.leases.get(recordId("a"));
    expect(labels).toMatchObject({
      "sandbox.opensandbox.io/freeze-owner": "uid-1",
      "sandbox.opensandbox.io/freeze-container": "a",
      "sandbox.opensandbox.io/freeze-expires": new Date(1_000_000 + 10_000 + RECORD_MARGIN_MS).toISOString(),
    });
    await f.thaw();
    expect(t.leases.size).toBe(0);
  });

  it("a second freeze of the same containers waits until the first is over; the first is never resumed by the second", async () => {
    const t = new FakeTasks(["a"]);
    const first = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-A" });
    const second = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-B" });
    await first.freeze();
    let secondFrozen = false;
    const waiting = second.freeze().then(() => {
      secondFrozen = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(secondFrozen).toBe(false);
    expect(t.all()).toEqual(["PAUSED"]);
    await first.thaw();
    await waiting;
    expect(t.all()).toEqual(["PAUSED"]);
    expect(t.leases.get(recordId("a"))?.["sandbox.opensandbox.io/freeze-owner"]).toBe("uid-B");
    await second.thaw();
    expect(t.all()).toEqual(["RUNNING"]);
  });

  it("a signal while waiting for another commit's freeze stops the wait and takes no record", async () => {
    const t = new FakeTasks(["a"]);
    const first = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-A" });
    await first.freeze();
    const second = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-B" });
    const waiting = expect(second.freeze()).rejects.toThrow(/interrupted/);
    await new Promise((r) => setTimeout(r, 150));
    await second.thaw(); // what thawAll() does on SIGTERM
    await waiting;
    expect(t.all()).toEqual(["PAUSED"]);
    expect(t.leases.get(recordId("a"))?.["sandbox.opensandbox.io/freeze-owner"]).toBe("uid-A");
    await first.thaw();
    expect(t.all()).toEqual(["RUNNING"]);
  });

  it("gives up waiting after the bound with an error naming the other snapshot, having paused nothing", async () => {
    const t = new FakeTasks(["a", "b"]);
    const first = new Freezer(t.client(), ["b"], 10_000, () => undefined, { owner: "uid-A", names: new Map([["b", "side"]]) });
    await first.freeze();
    const second = new Freezer(t.client(), ["a", "b"], 10_000, () => undefined, { owner: "uid-B", waitMs: 200, names: new Map([["b", "side"]]) });
    await expect(second.freeze()).rejects.toThrow(/container side is being frozen by the commit of snapshot uid-A .*waited 0 s/);
    // "a" was taken first and given back: nobody holds a record while waiting
    expect(t.leases.has(recordId("a"))).toBe(false);
    expect(t.all()).toEqual(["RUNNING", "PAUSED"]);
    await first.thaw();
  });

  it("replaces the stale record of a commit that was killed after its resume, and refuses one killed while frozen", async () => {
    const t = new FakeTasks(["a", "b"]);
    const past = Date.now() - 1000;
    t.leases.set(recordId("a"), recordLabels("a", "uid-dead", "tok-dead", past));
    const f = new Freezer(t.client(), ["a"], 10_000, () => undefined, { owner: "uid-new" });
    await f.freeze();
    expect(t.leases.get(recordId("a"))?.["sandbox.opensandbox.io/freeze-owner"]).toBe("uid-new");
    await f.thaw();
    t.leases.set(recordId("b"), recordLabels("b", "uid-dead", "tok-dead", past));
    t.state.set("b", "PAUSED");
    const g = new Freezer(t.client(), ["b"], 10_000, () => undefined, { owner: "uid-new" });
    await expect(g.freeze()).rejects.toThrow(/frozen by the commit of snapshot uid-dead, which stopped without resuming it.*SNAPSHOT_UID=uid-dead/);
    expect(t.state.get("b")).toBe("PAUSED");
    expect(t.leases.get(recordId("b"))?.["sandbox.opensandbox.io/freeze-owner"]).toBe("uid-dead");
  });

  it("of two commits replacing the same stale record at once, exactly one gets it", async () => {
    const t = new FakeTasks(["a"]);
    t.leases.set(recordId("a"), recordLabels("a", "uid-dead", "tok-dead", Date.now() - 1000));
    const opts = { lifetimeMs: 60_000, waitMs: 0 };
    const x = new FreezeOwnership(t.client(), "uid-x", opts);
    const y = new FreezeOwnership(t.client(), "uid-y", opts);
    // both read the stale record before either replaces it
    let n = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    t.onCreate = async (id) => {
      if (id === recordId("a") && ++n === 2) release();
      if (id === recordId("a") && n <= 2) await gate;
    };
    const results = await Promise.allSettled([x.acquire(["a"]), y.acquire(["a"])]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect([x.holds("a"), y.holds("a")].filter(Boolean)).toHaveLength(1);
    const holder = x.holds("a") ? x : y;
    expect(t.leases.get(recordId("a"))?.["sandbox.opensandbox.io/freeze-token"]).toBe(holder.token);
  });

  it("a container resumed by someone else during the freeze makes the thaw fail (torn capture), and the others are resumed", async () => {
    const t = new FakeTasks(["a", "b"]);
    const f = new Freezer(t.client(), ["a", "b"], 10_000, () => undefined, { names: new Map([["a", "main"]]) });
    await f.freeze();
    t.state.set("a", "RUNNING"); // `ctr tasks resume` mid-capture
    await expect(f.thaw()).rejects.toThrow(FreezeBroken);
    await expect(f.thaw()).rejects.toThrow(/container main was resumed by someone else during the freeze/);
    expect(t.all()).toEqual(["RUNNING", "RUNNING"]);
    expect(t.leases.size).toBe(0);
  });

  it("a container paused by someone else between our check and our pause is not resumed by us", async () => {
    const t = new FakeTasks(["a", "b"]);
    t.pauseDelayMs.set("b", 30);
    const f = new Freezer(t.client(), ["a", "b"], 10_000);
    const freezing = f.freeze();
    const rejected = expect(freezing).rejects.toThrow(/is paused, not by a commit/);
    await new Promise((r) => setTimeout(r, 10));
    t.state.set("b", "PAUSED"); // the user's pause lands first
    await rejected;
    expect(t.all()).toEqual(["RUNNING", "PAUSED"]);
  });

  it("a record past its release time is left to go stale instead of deleted (it may be someone else's by then)", async () => {
    const t = new FakeTasks(["a"]);
    let now = 1_000_000;
    const f = new Freezer(t.client(), ["a"], 1_000, () => undefined, { now: () => now });
    await f.freeze();
    now += 1_000 + RECORD_MARGIN_MS;
    await f.thaw();
    expect(t.all()).toEqual(["RUNNING"]);
    expect(t.leases.has(recordId("a"))).toBe(true);
  });
});

describe("freeze records", () => {
  const rec = { id: "r", container: "c", owner: "u", token: "t", expiresAt: 1000 };
  it("wait while the holder is within its bound, whatever the container's state", () => {
    expect(judge(rec, "PAUSED", 999)).toEqual({ kind: "wait" });
    expect(judge(rec, "RUNNING", 999)).toEqual({ kind: "wait" });
  });
  it("past the bound: take over a running container's record, never a frozen one's", () => {
    expect(judge(rec, "RUNNING", 1000)).toEqual({ kind: "take-over" });
    expect(judge(rec, undefined, 1000)).toEqual({ kind: "take-over" });
    expect(judge(rec, "PAUSED", 1000)).toEqual({ kind: "left-frozen" });
    expect(judge(rec, "PAUSING", 5000)).toEqual({ kind: "left-frozen" });
  });
  it("record ids are valid containerd identifiers of fixed length for any container id", () => {
    for (const id of ["a", "x".repeat(500), "ünï/cøde id"]) expect(recordId(id)).toMatch(/^sandbox-snapshot-freeze-[0-9a-f]{32}$/);
  });
});
