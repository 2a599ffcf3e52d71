// Heartbeat for the committer benchmark: a Node process on the host that bench/committer.ts moves
// into a sandbox container's freezer cgroup right after it starts (cgroup v1: the freezer hierarchy;
// v2: the unified one), so a paused container stalls it too. It records, on a file outside the
// captured filesystem, every stall longer than the threshold as "<startNs> <endNs>" (wall-clock
// nanoseconds, shared with the bench). Nothing else should stall it but the machine's scheduling.
//
// The loop is synchronous: Atomics.wait sleeps 1 ms (like Go's time.Sleep) without the event loop's
// timers, and it allocates nothing per tick, so garbage collection does not add stalls of its own.
// Usage: node heartbeat.js <out-file> <threshold-ms>
import { closeSync, openSync, writeSync } from "node:fs";

const [out, thresholdArg] = process.argv.slice(2);
const thresholdMs = Number(thresholdArg);
if (out === undefined || !Number.isInteger(thresholdMs) || thresholdMs <= 0) {
  process.stderr.write("usage: heartbeat <out-file> <threshold-ms> (a positive integer)\n");
  process.exit(2);
}

const fd = openSync(out, "a", 0o644);
const origin = performance.timeOrigin; // wall clock (ms) at performance.now() = 0
const wallNs = (t: number): string => (BigInt(Math.round(origin * 1000)) * 1000n + BigInt(Math.round(t * 1e6))).toString();
const cell = new Int32Array(new SharedArrayBuffer(4));
const parent = process.ppid;

writeSync(fd, `start ${wallNs(performance.now())}\n`);
let last = performance.now(); // monotonic
let checked = last;
for (;;) {
  Atomics.wait(cell, 0, 0, 1);
  const now = performance.now();
  if (now - last > thresholdMs) writeSync(fd, `${wallNs(last)} ${wallNs(now)}\n`);
  last = now;
  // the bench kills it when the container goes; should the bench die first, do not linger
  if (now - checked > 1000) {
    checked = now;
    if (process.ppid !== parent) break;
  }
}
closeSync(fd);
