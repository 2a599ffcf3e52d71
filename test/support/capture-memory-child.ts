// Runs one commit's capture and layer compression in a process of its own and reports the largest
// live memory seen (heap + buffers after a forced GC), for the bounded-memory test. It is sampled every
// 50 ms during the capture and after every MiB of layer handed to compression: the compression pipeline
// holds the most buffers, and a timer alone sampled a short run's few seconds of it too rarely to see
// its peak (the two runs then differed by their sampling, not by their memory).
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
/** The layer's chunks, with a sample after every MiB of them. */
async function* sampled(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let since = 0;
  for await (const c of chunks) {
    yield c;
    since += c.length;
    if (since >= 1024 * 1024) {
      since = 0;
      sample();
    }
  }
}
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
  const blob = await compressLayer(sampled(bytes.chunks), join(scratchDir, "layer.tar.gz"), "gzip", scratch.available());
  sample();
  const entries = layer.frozen?.entries ?? 0;
  process.stdout.write(`${JSON.stringify({ maxLiveBytes: maxLive, entries, layerEntries: bytes.result().entries, blobBytes: blob.size, freezeMillis: r.freezeMillis })}\n`);
  if (layer.source.kind === "upper") layer.source.upper.dispose();
  await client.deleteLease(lease);
} finally {
  clearInterval(timer);
  client.close();
}
