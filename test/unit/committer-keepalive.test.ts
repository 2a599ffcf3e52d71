// The committer's process must not end while containers are frozen. grpc-js can leave its connection
// unreferenced while a call is still in flight (seen on real containerd: Tasks/Pause in flight, the
// event loop empty, the process exited with code 0 and no result, the container left PAUSED). The
// freeze itself must keep the process alive: here a "containerd" whose answers arrive only through
// unreferenced timers, in a process of its own.
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const FREEZE = fileURLToPath(new URL("../../src/committer/freeze.ts", import.meta.url));

const SCRIPT = `
import { Freezer } from ${JSON.stringify(FREEZE)};
const later = (ms, v) => new Promise((r) => setTimeout(() => r(v), ms).unref());
const state = new Map();
const client = {
  pause: async (id) => { await later(200); state.set(id, "PAUSED"); },
  resume: async (id) => { await later(50); state.set(id, "RUNNING"); },
  taskStatus: async (id) => { await later(5); return state.get(id) ?? "RUNNING"; },
  // the freeze records: gRPC calls too, answered the same way
  createLease: async (id, labels) => { await later(20); leases.set(id, labels); },
  deleteLease: async (id) => { await later(20); leases.delete(id); },
  listLeases: async (filters) => { await later(20); return [...leases].filter(([id]) => filters.includes("id==" + id)).map(([id, labels]) => ({ id, labels, created_at: null })); },
};
const leases = new Map();
const f = new Freezer(client, ["c1"], 60_000);
await f.freeze();
process.stdout.write("paused\\n");
await f.thaw();
process.stdout.write("thawed " + state.get("c1") + " records " + leases.size + "\\n");
`;

describe("committer: a freeze keeps the process alive", () => {
  it("finishes pausing and resuming even when containerd's answers hold no reference on the event loop", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", SCRIPT], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("paused\nthawed RUNNING records 0\n");
    expect(r.status).toBe(0);
  });
});
