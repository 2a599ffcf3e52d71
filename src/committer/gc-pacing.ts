// A commit streams gigabytes through short-lived Buffers of up to 1 MiB (layer pieces, deflate output,
// upload reads). Their memory is outside V8's heap, and V8 frees dead ones only when its external-memory
// heuristic starts a collection — after some 64 MiB of them — so without help the committer's RSS rises
// by that much on every large layer and drops back, a sawtooth whose peak is what a memory limit sees.
// A young-generation collection every few MiB (~0.1 ms each; these Buffers die young) keeps the dead
// ones few, and the peak flat whatever the layer's size.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Collect = (options: { type: "minor" }) => void;

let collect: Collect | null | undefined;

/** V8's `gc`, exposed at run time (the committer's command line stays `node cli.js`); null if refused. */
function collector(): Collect | null {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: Collect }).gc;
    try {
      if (exposed !== undefined) collect = exposed;
      else {
        setFlagsFromString("--expose-gc");
        collect = runInNewContext("gc") as Collect;
      }
    } catch {
      collect = null; // pacing is an optimisation: without it memory is still bounded, only higher
    }
  }
  return collect;
}

/** Bytes streamed between two young-generation collections. */
export const GC_PACE_BYTES = 4 * 1024 * 1024;

/** Counts bytes streamed and asks for a young-generation collection after every `everyBytes`. */
export class GcPacer {
  private since = 0;
  constructor(
    private readonly everyBytes = GC_PACE_BYTES,
    private readonly collect: () => void = () => collector()?.({ type: "minor" }),
  ) {}

  streamed(bytes: number): void {
    this.since += bytes;
    if (this.since < this.everyBytes) return;
    this.since = 0;
    this.collect();
  }
}
