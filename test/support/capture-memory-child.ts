// Runs one commit's capture and layer compression in a process of its own and reports the largest
// live memory seen (heap + buffers, sampled after a forced GC every 50 ms), for the bounded-memory test.
//   node --expose-gc --import tsx capture-memory-child.ts <socket> <containerd root> <pod> <scratch dir>
import { join } from "node:path";
import { capture, layerBytes } from "../../src/committer/capture.js";
import { compressLayer } from "../../src/committer/compress.js";
import { findTargets } from "../../src/committer/lookup.js";
import { Scratch } from "../../src/committer/scratch.js";
import { ContainerdClient } from "../../src/containerd/client.js";

const [socket, root, pod, scratchDir] = process.argv.slice(2) as [string, string, string, string];
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");
let maxLive = 0;
const sample = (): void => {
  gc();
  const m = process.memoryUsage();
  maxLive = Math.max(maxLive, m.heapUsed + m.arrayBuffers);
};
const timer = setInterval(sample, 50);
const client = new ContainerdClient({ socket, namespace: "k8s.io" });
try {
  const lease = `memory-${process.pid}`;
  await client.createLease(lease, {});
  const targets = await findTargets(client, pod, "ns", ["main"]);
  const scratch = new Scratch(scratchDir, 8 * 1024 ** 3);
  const r = await capture(client.leased(lease), targets.map((container) => ({ container })), { maxFreezeSeconds: 120, containerdRoot: root }, scratch, () => undefined);
  const layer = r.layers[0];
  if (layer === undefined) throw new Error("no layer");
  const bytes = layerBytes(client.leased(lease), layer);
  const blob = await compressLayer(bytes.chunks, join(scratchDir, "layer.tar.gz"), "gzip", scratch.available());
  sample();
  const entries = layer.frozen?.entries ?? 0;
  process.stdout.write(`${JSON.stringify({ maxLiveBytes: maxLive, entries, layerEntries: bytes.result().entries, blobBytes: blob.size, freezeMillis: r.freezeMillis })}\n`);
  if (layer.source.kind === "upper") layer.source.upper.dispose();
  await client.deleteLease(lease);
} finally {
  clearInterval(timer);
  client.close();
}
