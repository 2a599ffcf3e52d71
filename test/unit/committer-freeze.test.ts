import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ContainerdClient, ContainerdError } from "../../src/containerd/client.js";
import type { ProcessStatus } from "../../src/containerd/types.js";
import { Freezer, thawAll, WatchdogExpired } from "../../src/committer/freeze.js";

/** A containerd stand-in holding task states; pause/resume may be slowed or made to fail. */
class FakeTasks {
  readonly state = new Map<string, ProcessStatus>();
  pauseDelayMs = new Map<string, number>();
  failPause = new Set<string>();
  constructor(ids: string[]) {
    for (const id of ids) this.state.set(id, "RUNNING");
  }
  client(): ContainerdClient {
    const fake = {
      pause: async (id: string): Promise<void> => {
        await new Promise((r) => setTimeout(r, this.pauseDelayMs.get(id) ?? 1));
        if (this.failPause.has(id)) throw new ContainerdError("Tasks.Pause", grpc.status.UNKNOWN, `cannot pause ${id}`);
        if (this.state.get(id) === "PAUSED") throw new ContainerdError("Tasks.Pause", grpc.status.FAILED_PRECONDITION, "already paused");
        this.state.set(id, "PAUSED");
      },
      resume: async (id: string): Promise<void> => {
        await new Promise((r) => setTimeout(r, 1));
        if (this.state.get(id) !== "PAUSED") throw new ContainerdError("Tasks.Resume", grpc.status.FAILED_PRECONDITION, "not paused");
        this.state.set(id, "RUNNING");
      },
      taskStatus: (id: string): Promise<ProcessStatus | undefined> => Promise.resolve(this.state.get(id)),
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

  it("takes a container left paused by an interrupted earlier run as paused, and resumes it", async () => {
    const t = new FakeTasks(["a"]);
    t.state.set("a", "PAUSED");
    const f = new Freezer(t.client(), ["a"], 10_000);
    await f.freeze();
    await f.thaw();
    expect(t.all()).toEqual(["RUNNING"]);
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
});
