// Capture of one overlay upper directory with a freeze that depends on what changed during the commit,
// not on what changed since the container started — the way live migration copies memory:
//
// 1. pre-copy, while the sandbox runs: walk the tree (stat of every entry) and archive it raw with GNU
//    tar; join the two into an index (one record per entry: its stat, and where a copy is that can be
//    trusted). Repeat — archiving only entries changed since (GNU `--newer`) — while the set of entries
//    without a trusted copy shrinks, at most `maxPasses` times.
// 2. frozen: walk and stat the tree again; an entry whose every stat field matches its index record
//    keeps its pre-copied copy; every other entry (new, changed, renamed, relinked…) is archived raw
//    again, by an explicit list. That walk and that read are all that happens inside the freeze.
// 3. after the thaw: the frozen walk's records, in order, with each entry's copy, make the OCI layer
//    (whiteouts, opaque directories, xattr filtering in ./layer.ts). Deletions, renames, hard links and
//    the set of entries come from the frozen walk only; a pre-copied entry is used only if the frozen
//    stat proves it unchanged — its xattrs and opacity included (setxattr and link changes move ctime).
//
// When a pre-copied copy is trusted (the "racy git" rule): type, inode, size, mode, owner, mtime and
// ctime of the walk, of the archive's own header and of the frozen walk all agree, *and* the entry's
// ctime is older than the moment its pass started by more than the timestamp granularity. A kernel
// stamps changes from a coarse clock (a tick behind, or whole seconds on some file systems): a change
// made just after the copy could carry the very ctime the copy was taken with, and only an entry
// already "old" when it was read cannot be changed again without its ctime moving.
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { LayerEncoder, NeedsDiffService, OciConverter, TRUSTED_OVERLAY, type LayerBytes } from "./layer.js";
import { rawTar } from "./rawtar.js";
import { comparePaths, RecordReader, RecordWriter, type EntryRecord, type Source } from "./records.js";
import type { Scratch } from "./scratch.js";
import { FileBytes, readEntryAt, readTarFile, type EntryAt, type TarHeader } from "./tar.js";
import { displayPath, walkTree, type EntryStat, type WalkEntry } from "./walk.js";

export interface UpperOptions {
  readonly tarBinary?: string;
  /** `trusted.overlay.` or, on `userxattr` mounts, `user.overlay.`. */
  readonly overlayPrefix?: string;
  /** Wall clock in ms (compared with ctimes); tests pass their own. */
  readonly now?: () => number;
  /** Pre-copy passes at most (0: no pre-copy, everything is read under the freeze). */
  readonly maxPasses?: number;
  /** Called after each pre-copy pass's walk and read (tests change the tree here, while "running"). */
  readonly onPass?: (pass: number) => Promise<void> | void;
  /**
   * TEST ONLY: trust a copy whatever its ctime — the racy-git rule off. It exists so the property test
   * can show that the rule is what keeps same-tick rewrites out of a snapshot; nothing else sets it.
   */
  readonly unsafeTrustRacyEntries?: boolean;
}

export interface PassStats {
  readonly entries: number;
  /** Entries with no trusted copy after the pass. */
  readonly changed: number;
  /** Their real size (what the freeze would read). */
  readonly changedBytes: number;
  readonly archiveBytes: number;
  readonly millis: number;
}

export interface FrozenStats {
  readonly entries: number;
  readonly reread: number;
  readonly rereadBytes: number;
}

/** Racy margin for file systems with nanosecond stamps (from a coarse clock: a tick ≤ 10 ms) … */
const FINE_MARGIN_MS = 50;
/** … and for those with whole seconds (ext4 with 128-byte inodes, some network file systems). */
const COARSE_MARGIN_MS = 2000;

function typeMatches(h: TarHeader, s: EntryStat): boolean {
  if (h.type === "link") return s.kind === "file" || s.kind === "char";
  if (h.type !== s.kind) return false;
  if (s.kind === "file" && h.size !== s.size) return false;
  return true;
}

const nsToMs = (ns: bigint | undefined, fallbackS: number): number => (ns === undefined ? fallbackS * 1000 : Number(ns) / 1e6);
const close = (a: number, b: number): boolean => Math.abs(a - b) < 0.001;

/** The archive's header was taken of the same, unchanged entry the walk saw. */
function headerMatches(h: TarHeader, s: EntryStat): boolean {
  return (
    typeMatches(h, s) &&
    (h.mode & 0o7777) === s.perm &&
    h.uid === s.uid &&
    h.gid === s.gid &&
    close(nsToMs(h.mtimeNs, h.mtime), s.mtimeMs) &&
    h.ctimeNs !== undefined &&
    close(nsToMs(h.ctimeNs, 0), s.ctimeMs)
  );
}

function normalise(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  if (n === ".") n = "";
  return n.replace(/\/+$/, "");
}

/** An archive file read in order, one entry ahead, synchronously (readEntryAt). */
class ArchiveCursor {
  head: EntryAt | undefined;
  /** The head was handed out by `take` (the cursor moves on at the next take, after its data is read). */
  private taken = false;
  constructor(readonly bytes: FileBytes) {
    this.head = readEntryAt(bytes, 0);
  }
  advance(): void {
    if (this.head !== undefined) this.head = readEntryAt(this.bytes, this.head.next);
  }
  headPath(): string | undefined {
    return this.head === undefined ? undefined : normalise(this.head.header.name);
  }
  /** The next entry, which must be `path`. */
  take(path: string): EntryAt {
    if (this.taken) this.advance();
    const head = this.head;
    if (head === undefined || this.headPath() !== path) {
      throw new Error(`capture: ${displayPath(path)} missing from the frozen read (found ${head === undefined ? "the end" : displayPath(this.headPath() ?? "")})`);
    }
    this.taken = true;
    return head;
  }
}

/** NUL-terminated paths for tar's `--files-from`, written through a buffer. */
class PathList {
  private readonly fd: number;
  private parts: Buffer[] = [];
  private size = 0;
  count = 0;
  constructor(path: string) {
    this.fd = openSync(path, "w", 0o600);
  }
  add(rel: string): void {
    const b = Buffer.from(`${rel}\0`, "latin1");
    this.parts.push(b);
    this.size += b.length;
    this.count++;
    if (this.size > 1024 * 1024) this.flush();
  }
  private flush(): void {
    const all = Buffer.concat(this.parts);
    let off = 0;
    while (off < all.length) off += writeSync(this.fd, all, off, all.length - off);
    this.parts = [];
    this.size = 0;
  }
  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

// Linux's dev_t encoding (glibc's gnu_dev_major/minor), for numbers a double holds exactly
const major = (rdev: number): number => (Math.floor(rdev / 256) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
const minor = (rdev: number): number => (rdev & 0xff) | (Math.floor(rdev / 4096) & 0xfff00);

/** Read-ahead of the archive readers: a pread serves the headers and data of many small entries. */
const READ_AHEAD = 1024 * 1024;

/** A sparse entry's data, holes as zeros (through readTarFile, which reads the sparse map). */
async function* sparseBody(bytes: FileBytes, at: EntryAt): AsyncGenerator<Buffer> {
  const it = readTarFile(bytes, at.offset);
  const first = await it.next();
  if (first.done === true) throw new Error(`capture: no entry at offset ${at.offset}`);
  yield* first.value.body;
}

export class UpperCapture {
  /** Archive paths; a record's `src.tar` indexes this list. */
  private readonly archives: string[] = [];
  private index: string | undefined;
  private plan: string | undefined;
  private deltaArchive = -1;
  readonly passes: PassStats[] = [];
  private readonly now: () => number;
  private readonly prefix: string;

  constructor(
    readonly upperdir: string,
    private readonly scratch: Scratch,
    private readonly name: string,
    private readonly opts: UpperOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.prefix = opts.overlayPrefix ?? TRUSTED_OVERLAY;
  }

  /** Bytes the pre-copy archives hold. */
  get precopiedBytes(): number {
    return this.passes.reduce((n, p) => n + p.archiveBytes, 0);
  }

  private checkOverlayXattrs(h: TarHeader): void {
    for (const k of h.xattrs.keys()) {
      if (k === `${this.prefix}redirect` || k === `${this.prefix}metacopy`) {
        throw new NeedsDiffService(`overlay ${k.slice(this.prefix.length)} in use on ${normalise(h.name)}: the upper directory alone does not hold the changes`);
      }
    }
  }

  /**
   * Pre-copy passes (sandbox running). Throws HostileTreeError / NeedsDiffService / ScratchFullError
   * before any freeze; `signal` stops it (another container's pre-copy failed).
   */
  async precopy(signal?: AbortSignal): Promise<void> {
    const max = this.opts.maxPasses ?? 3;
    let sinceMs: number | undefined;
    let lastChanged = Number.POSITIVE_INFINITY;
    for (let pass = 1; pass <= max; pass++) {
      const t0 = this.now();
      const started = performance.now();
      const tarId = this.archives.length;
      const archive = this.scratch.file(`${this.name}-pass${pass}.tar`);
      this.archives.push(archive);
      const walkPath = this.scratch.file(`${this.name}-pass${pass}.walk`);
      signal?.throwIfAborted();
      const stopTar = new AbortController();
      const reading = rawTar(this.upperdir, sinceMs === undefined ? { kind: "tree" } : { kind: "newer", sinceMs }, archive, {
        tarBinary: this.opts.tarBinary,
        limitBytes: () => this.scratch.availableFor(archive),
        signal: signal === undefined ? stopTar.signal : AbortSignal.any([stopTar.signal, signal]),
        tolerateChanges: true,
      });
      let wholeSeconds = true;
      const walk = new RecordWriter(walkPath);
      try {
        for await (const batch of walkTree(this.upperdir, { signal })) {
          for (const e of batch) {
            walk.add({ ...e, src: undefined });
            if (e.stat.ctimeMs % 1000 !== 0) wholeSeconds = false;
          }
        }
      } catch (e) {
        stopTar.abort(e);
        await reading.catch(() => undefined);
        throw e;
      } finally {
        walk.close();
      }
      const archiveBytes = await reading;
      const margin = walk.count > 0 && wholeSeconds ? COARSE_MARGIN_MS : FINE_MARGIN_MS;
      const trustedBefore = this.opts.unsafeTrustRacyEntries === true ? Number.POSITIVE_INFINITY : t0 - margin;
      const indexPath = this.scratch.file(`${this.name}-pass${pass}.index`);
      const stats = this.join(walkPath, tarId, indexPath, trustedBefore);
      this.scratch.remove(walkPath);
      if (this.index !== undefined) this.scratch.remove(this.index);
      this.index = indexPath;
      this.passes.push({ ...stats, archiveBytes, millis: Math.round(performance.now() - started) });
      await this.opts.onPass?.(pass);
      if (stats.changed === 0 || stats.changed >= lastChanged) break;
      lastChanged = stats.changed;
      sinceMs = t0 - margin;
      // entries changed just before this pass become trustworthy once the margin has passed
      const wait = t0 + margin - this.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, Math.min(wait, margin)));
    }
  }

  /** Joins a pass's walk with its archive and the previous index into the pass's index. */
  private join(walkPath: string, tarId: number, out: string, trustedBefore: number): Omit<PassStats, "archiveBytes" | "millis"> {
    const walk = new RecordReader(walkPath);
    const prev = this.index !== undefined ? new RecordReader(this.index) : undefined;
    const fd = openSync(this.archives[tarId] as string, "r");
    const writer = new RecordWriter(out);
    let changed = 0;
    let changedBytes = 0;
    try {
      const tar = new ArchiveCursor(new FileBytes(fd, 0, READ_AHEAD));
      // where the data of multiply-linked files is in this archive (tar stores it once)
      const linkData = new Map<string, number>();
      for (let w = walk.next(); w !== undefined; w = walk.next()) {
        let src: Source | undefined;
        for (let p = tar.headPath(); p !== undefined && comparePaths(p, w.path) < 0; p = tar.headPath()) tar.advance();
        const head = tar.head;
        if (head !== undefined && tar.headPath() === w.path) {
          const h = head.header;
          this.checkOverlayXattrs(h);
          if (h.type === "file" && w.stat.nlink > 1) linkData.set(w.path, head.offset);
          if (headerMatches(h, w.stat) && w.stat.ctimeMs < trustedBefore) {
            const at = h.type === "link" ? linkData.get(normalise(h.linkname)) : head.offset;
            if (at !== undefined) src = { tar: tarId, offset: at };
          }
          tar.advance();
        }
        if (src === undefined && prev !== undefined) {
          for (let p = prev.path(); p !== undefined && comparePaths(p, w.path) < 0; p = prev.path()) prev.skip();
          if (prev.path() === w.path && prev.sameStatAs(w.stat)) src = prev.peek()?.src;
        }
        if (src === undefined) {
          changed++;
          changedBytes += w.stat.kind === "file" ? Math.min(w.stat.size, w.stat.blocks * 512) : 0;
        }
        writer.add({ ...w, src });
      }
      return { entries: writer.count, changed, changedBytes };
    } finally {
      writer.close();
      walk.close();
      prev?.close();
      closeSync(fd);
    }
  }

  /**
   * Inside the freeze: walk and stat, then read again (raw) exactly the entries the index cannot vouch
   * for. With no pre-copy, that is every entry.
   */
  async frozen(signal: AbortSignal): Promise<FrozenStats> {
    const prev = this.index !== undefined ? new RecordReader(this.index) : undefined;
    const planPath = this.scratch.file(`${this.name}.plan`);
    const listPath = this.scratch.file(`${this.name}.list`);
    const plan = new RecordWriter(planPath);
    const list = new PathList(listPath);
    this.deltaArchive = this.archives.length;
    const delta = this.scratch.file(`${this.name}-frozen.tar`);
    this.archives.push(delta);
    const fromDelta: Source = { tar: this.deltaArchive, offset: -1 };
    let rereadBytes = 0;
    try {
      for await (const batch of walkTree(this.upperdir, { signal, frozen: true })) {
        for (const w of batch) {
          if (prev !== undefined) {
            for (let p = prev.path(); p !== undefined && comparePaths(p, w.path) < 0; p = prev.path()) prev.skip();
            // unchanged since its copy: the index's record goes into the plan as it is (bytes copied)
            if (prev.path() === w.path && prev.sameStatAs(w.stat)) {
              plan.addCurrent(prev);
              continue;
            }
          }
          list.add(w.path);
          rereadBytes += w.stat.kind === "file" ? Math.min(w.stat.size, w.stat.blocks * 512) : 0;
          plan.add({ ...w, src: fromDelta });
        }
      }
    } finally {
      plan.close();
      list.close();
      prev?.close();
    }
    this.plan = planPath;
    if (list.count === 0) writeFileSync(delta, "");
    else {
      await rawTar(this.upperdir, { kind: "list", listPath }, delta, {
        tarBinary: this.opts.tarBinary,
        limitBytes: () => this.scratch.availableFor(delta),
        signal,
        tolerateChanges: false,
      });
    }
    return { entries: plan.count, reread: list.count, rereadBytes };
  }

  /**
   * After the thaw: the OCI layer (./layer.ts) of the frozen tree, its entries in order, each from its
   * copy, hard links from the frozen walk's inodes (the first name carries the data, later names link
   * to it). One synchronous step per entry (no promise, no generator): hundreds of thousands of entries
   * cost what reading and encoding their headers costs.
   */
  layer(overlayPrefix: string): LayerBytes {
    if (this.plan === undefined) throw new Error("capture: layer() before frozen()");
    const planPath = this.plan;
    const enc = new LayerEncoder();
    const conv = new OciConverter(overlayPrefix);
    const chunks = async function* (this: UpperCapture): AsyncGenerator<Buffer> {
      const plan = new RecordReader(planPath);
      const fds = this.archives.map((a) => openSync(a, "r"));
      try {
        // one reader per archive, moved to each entry: its read-ahead serves the neighbours that follow
        const readers = fds.map((fd) => new FileBytes(fd, 0, READ_AHEAD));
        const delta = new ArchiveCursor(readers[this.deltaArchive] as FileBytes);
        const emitted = new Map<string, string>();
        for (let rec = plan.next(); rec !== undefined; rec = plan.next()) {
          const src = rec.src;
          if (src === undefined) throw new Error(`capture: no copy of ${rec.path}`);
          const fromDelta = src.tar === this.deltaArchive;
          const bytes = readers[src.tar] as FileBytes;
          const at = fromDelta ? delta.take(rec.path) : readEntryAt(bytes, src.offset);
          if (at === undefined) throw new Error(`capture: no entry at offset ${src.offset} of pass ${src.tar + 1}'s archive`);
          const raw = this.rawHeader(rec, at.header, emitted);
          const { headers, body } = conv.convert(raw.header);
          for (const [i, h] of headers.entries()) {
            enc.entry(h);
            if (i === 0 && body && raw.data && h.type === "file" && h.size > 0) {
              if (at.sparseSize === undefined) {
                bytes.position = at.dataAt;
                for (let left = at.stored; left > 0; ) {
                  const c = bytes.chunkSync(left);
                  left -= c.length;
                  enc.data(c);
                  yield* enc.pieces(); // a large file streams: at most a piece waits here
                }
              } else {
                for await (const c of sparseBody(bytes, at)) {
                  enc.data(c);
                  yield* enc.pieces();
                }
              }
            }
          }
          yield* enc.pieces();
        }
        yield* enc.finish();
      } finally {
        plan.close();
        for (const fd of fds) closeSync(fd);
      }
    };
    return { chunks: chunks.call(this), result: () => enc.result() };
  }

  /** An entry's raw (overlay) header as the frozen walk saw it, and whether its copy's data goes in. */
  private rawHeader(rec: EntryRecord, copy: TarHeader, emitted: Map<string, string>): { header: TarHeader; data: boolean } {
    const h: TarHeader = { ...copy, name: rec.path };
    const s = rec.stat;
    if (s.kind === "file" && s.nlink > 1) {
      const key = `${s.dev}:${s.ino}`;
      const first = emitted.get(key);
      if (first !== undefined) return { header: { ...h, type: "link", linkname: first, size: 0 }, data: false };
      emitted.set(key, rec.path);
      if (h.type === "link") throw new Error(`capture: no data for ${rec.path} (hard link to ${h.linkname} that was not captured)`);
    } else if (h.type === "link") {
      // a second name of a device node (overlayfs shares one whiteout inode): the node itself
      return { header: { ...h, type: s.kind, linkname: "", size: 0, devmajor: major(s.rdev), devminor: minor(s.rdev) }, data: false };
    }
    return { header: h, data: true };
  }

  /** Removes what this capture wrote (the scratch's bookkeeping). */
  dispose(): void {
    for (const a of this.archives) this.scratch.remove(a);
    if (this.index !== undefined) this.scratch.remove(this.index);
    if (this.plan !== undefined) this.scratch.remove(this.plan);
  }
}

export type { WalkEntry };
