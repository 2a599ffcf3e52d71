// `npm run cluster:down`: stops what `npm run cluster:up` started (its background process tears the
// node down: pods, containerd, bridge, cgroups, host settings), and waits for it.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_RUN_DIR, alive, teardownNodeHost } from "../../support/node-host.js";

const STATE_FILE = join(NODE_RUN_DIR, "cluster-up.json");

if (!existsSync(STATE_FILE)) {
  process.stdout.write("cluster-down: nothing running (no cluster-up state)\n");
  // A crashed run may have left the node's host changes behind: undo them (no-op when clean).
  teardownNodeHost();
} else {
  const { pid } = JSON.parse(readFileSync(STATE_FILE, "utf8")) as { pid: number };
  if (alive(pid)) process.kill(pid, "SIGTERM");
  const t0 = Date.now();
  while (alive(pid) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 250));
  if (alive(pid)) {
    process.stderr.write(`cluster-down: process ${String(pid)} still running after 120 s; killing it\n`);
    process.kill(pid, "SIGKILL");
  }
  teardownNodeHost();
  process.stdout.write(`cluster-down: stopped (process ${String(pid)})\n`);
}
