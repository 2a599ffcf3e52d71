// withLease: the commit's work runs under one lease that containerd would collect by itself, every call
// of the client it hands out carries it, and it is deleted afterwards whatever happened.
import { describe, expect, it } from "vitest";
import { ContainerdClient } from "../../src/containerd/client.js";
import { LABEL_GC_EXPIRE, withLease } from "../../src/containerd/lease.js";

/** A client that records lease calls instead of talking to containerd (no socket is ever dialled). */
class LeaseRecorder extends ContainerdClient {
  created: { id: string; labels: Record<string, string> }[] = [];
  deleted: string[] = [];
  failDelete = false;
  constructor() {
    super({ socket: "/nonexistent/containerd.sock", namespace: "k8s.io" });
  }
  override createLease(id: string, labels: Record<string, string>): Promise<void> {
    this.created.push({ id, labels });
    return Promise.resolve();
  }
  override deleteLease(id: string): Promise<void> {
    this.deleted.push(id);
    return this.failDelete ? Promise.reject(new Error("connection reset")) : Promise.resolve();
  }
}

describe("withLease", () => {
  it("creates a lease with a GC expiry, hands out a client bound to it, and deletes it", async () => {
    const c = new LeaseRecorder();
    const before = Date.now();
    const seen = await withLease(c, { prefix: "image-committer", ttlMs: 3_600_000 }, (leased) => Promise.resolve(leased.lease));
    expect(seen).toMatch(/^image-committer-[0-9a-f]{12}$/);
    expect(c.created).toHaveLength(1);
    expect(c.created[0]?.id).toBe(seen);
    const expire = Date.parse(c.created[0]?.labels[LABEL_GC_EXPIRE] ?? "");
    expect(expire).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(expire).toBeLessThanOrEqual(Date.now() + 3_600_000);
    expect(c.deleted).toEqual([seen]);
    expect(c.lease).toBeUndefined();
    c.close();
  });

  it("deletes the lease when the work fails, and reports a delete that fails without hiding the work's error", async () => {
    const c = new LeaseRecorder();
    c.failDelete = true;
    const told: string[] = [];
    await expect(
      withLease(c, { prefix: "x", ttlMs: 1000, onDeleteError: (m) => told.push(m) }, () => Promise.reject(new Error("capture failed"))),
    ).rejects.toThrow("capture failed");
    expect(c.deleted).toHaveLength(1);
    expect(told).toHaveLength(1);
    expect(told[0]).toContain(c.deleted[0]);
    expect(told[0]).toMatch(/expires by itself at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\): connection reset/);
    c.close();
  });

  it("two leases never share an id", async () => {
    const c = new LeaseRecorder();
    const ids = await Promise.all([0, 1, 2].map(() => withLease(c, { prefix: "p", ttlMs: 1000 }, (l) => Promise.resolve(l.lease))));
    expect(new Set(ids).size).toBe(3);
    c.close();
  });
});
