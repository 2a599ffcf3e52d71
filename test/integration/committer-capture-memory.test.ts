// A capture's memory does not grow with the number of entries: the same commit of a real upper
// directory with 20,000 and with 70,000 entries, each in a process of its own, and the largest live
// memory (heap + buffers after a forced GC) compared. A per-entry index in memory (~200 bytes an entry
// as JS objects) would add ~10 MiB between the two; the bench's workload (g) commits 500,000 entries
// under the Job's memory limit (docs/benchmarks.md). The smaller tree is large enough for its layer to
// reach the pipeline's steady state (every piece in flight at once): with 10,000 entries the largest
// sample was often taken before it, and the difference measured the sampling, not the capture.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingComponents } from "../support/components.js";
import { removeContainer, runContainer, startContainerd, upperDir, type Containerd } from "../support/containerd.js";

const run = promisify(execFile);
const missing = missingComponents(["containerd", "runc", "ctr", "tar"]);
const CHILD = fileURLToPath(new URL("../support/capture-memory-child.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Adds small files (100 per directory) under `dir` until it holds `total` of them. */
function fill(dir: string, from: number, total: number): void {
  for (let i = from; i < total; i++) {
    const d = join(dir, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0 || i === from) mkdirSync(d, { recursive: true });
    writeFileSync(join(d, `f${i}`), `entry ${i}\n`);
  }
}

describe.skipIf(missing)("committer capture memory (real containerd + overlay)", () => {
  let cd: Containerd;
  let work: string;

  beforeAll(async () => {
    cd = await startContainerd();
    work = mkdtempSync(join(tmpdir(), "committer-memory-"));
  });
  afterAll(async () => {
    await cd.stop();
    rmSync(work, { recursive: true, force: true });
  });

  async function measure(pod: string): Promise<{ maxLiveBytes: number; entries: number; layerEntries: number }> {
    const scratch = mkdtempSync(join(work, "scratch-"));
    const { stdout } = await run(process.execPath, ["--expose-gc", "--import", "tsx", CHILD, cd.socket, cd.root, pod, scratch], { cwd: REPO_ROOT, maxBuffer: 1024 * 1024 });
    rmSync(scratch, { recursive: true, force: true });
    return JSON.parse(stdout) as { maxLiveBytes: number; entries: number; layerEntries: number };
  }

  it("commits 20,000 and 70,000 entries with the same memory", async () => {
    const id = await runContainer(cd, "many", "ns", "main");
    try {
      // straight into the upper directory (as the container's writes end up there), for speed
      const tree = join(await upperDir(cd, id), "work");
      fill(tree, 0, 20_000);
      const small = await measure("many");
      fill(tree, 20_000, 70_000);
      const large = await measure("many");
      process.stderr.write(`capture memory: ${small.entries} entries ${(small.maxLiveBytes / 2 ** 20).toFixed(1)} MiB, ${large.entries} entries ${(large.maxLiveBytes / 2 ** 20).toFixed(1)} MiB\n`);
      expect(small.entries).toBeGreaterThan(20_000);
      expect(large.entries).toBeGreaterThan(70_000);
      expect(large.layerEntries).toBeGreaterThan(70_000);
      expect(large.maxLiveBytes - small.maxLiveBytes).toBeLessThan(6 * 2 ** 20);
    } finally {
      await removeContainer(cd, id);
    }
  }, 600_000);
});
