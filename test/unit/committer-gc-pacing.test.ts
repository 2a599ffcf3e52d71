// The committer's GC pacing: a young-generation collection after every few MiB streamed, so that dead
// layer Buffers are freed long before V8's own external-memory heuristic would (peak RSS: bench).
import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { GC_PACE_BYTES, GcPacer } from "../../src/committer/gc-pacing.js";

describe("GcPacer", () => {
  it("collects once per pace of bytes, however they are cut", () => {
    let collections = 0;
    const pacer = new GcPacer(10, () => collections++);
    for (let i = 0; i < 9; i++) pacer.streamed(1);
    expect(collections).toBe(0);
    pacer.streamed(1);
    expect(collections).toBe(1);
    pacer.streamed(25); // one large chunk: one collection, the count starts again
    expect(collections).toBe(2);
    for (let i = 0; i < 9; i++) pacer.streamed(1);
    expect(collections).toBe(2);
  });

  it("runs a young-generation collection with the real collector (exposed at run time)", async () => {
    const seen: number[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) seen.push((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? -1);
    });
    observer.observe({ entryTypes: ["gc"] });
    try {
      const pacer = new GcPacer();
      pacer.streamed(GC_PACE_BYTES - 1);
      await settle();
      const before = seen.filter((k) => k === constants.NODE_PERFORMANCE_GC_MINOR).length;
      pacer.streamed(1);
      await settle();
      expect(seen.filter((k) => k === constants.NODE_PERFORMANCE_GC_MINOR).length).toBeGreaterThan(before);
    } finally {
      observer.disconnect();
    }
  });
});

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
