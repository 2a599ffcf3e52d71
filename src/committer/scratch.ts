// The scratch volume, accounted in one place: every file the commit writes there is made here, counted
// by the blocks it really takes (a sparse archive counts its data, not its length), checked against
// SNAPSHOT_SCRATCH_LIMIT_BYTES (the emptyDir's limit, which the file system does not show) and the
// disk's free space, and removed at the end whatever happened.
import { lstatSync, readdirSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { ScratchFullError } from "./layer.js";

function blocksOf(path: string): number {
  const st = lstatSync(path, { throwIfNoEntry: false });
  return st === undefined ? 0 : st.blocks * 512;
}

/** Bytes in use under `dir` (real blocks), not following links. */
function usedUnder(dir: string): number {
  let total = 0;
  for (const name of readdirSync(dir, { encoding: "buffer" })) {
    const p = Buffer.concat([Buffer.from(`${dir}/`), name]);
    const st = lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) continue;
    total += st.blocks * 512;
    if (st.isDirectory()) total += usedUnder(p.toString("latin1"));
  }
  return total;
}

export class Scratch {
  private readonly files = new Set<string>();
  private readonly tag = randomBytes(4).toString("hex");
  /** Usage by others (earlier runs, other files) when this commit started. */
  private readonly foreign: number;

  constructor(
    readonly dir: string,
    readonly limitBytes: number,
  ) {
    this.foreign = usedUnder(dir);
  }

  /** A new file's path, owned (and removed) by this accounting. */
  file(name: string): string {
    const p = join(this.dir, `${name}-${this.tag}`);
    this.files.add(p);
    return p;
  }

  /** Bytes this commit's files take now. */
  used(): number {
    let n = 0;
    for (const f of this.files) n += blocksOf(f);
    return n;
  }

  /** What may still be written: the limit less all use, and the disk's free space. */
  available(): number {
    return this.roomBesides(0);
  }

  /** The room left if `own` bytes of this commit's use were not counted. */
  private roomBesides(own: number): number {
    const fs = statfsSync(this.dir);
    return Math.max(0, Math.min(this.limitBytes - this.foreign - (this.used() - own), fs.bavail * fs.bsize + own));
  }

  /**
   * The most `path` (one of this commit's files) may take, given what every other file takes now:
   * re-evaluated while it grows, it keeps files written at the same time within the limit together.
   */
  availableFor(path: string): number {
    return this.roomBesides(blocksOf(path));
  }

  /** Fails when `bytes` more would not fit (before anything is frozen, when called there). */
  check(bytes: number, what: string): void {
    const room = this.available();
    if (bytes > room) throw new ScratchFullError(room, what);
  }

  remove(path: string): void {
    rmSync(path, { force: true });
    this.files.delete(path);
  }

  removeAll(): void {
    for (const f of [...this.files]) this.remove(f);
  }
}
