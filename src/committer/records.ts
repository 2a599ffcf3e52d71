// The capture's per-entry records on the scratch volume — a walk's stats, with where a copy of the entry
// sits — written and read as streams in the walk's order, so that memory stays flat however many
// entries a tree has. A small fixed binary layout: a million entries are ~100 MB of disk, not of heap.
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import type { EntryStat, Kind, WalkEntry } from "./walk.js";

/** Where a copy of an entry is: archive `tar` (an index into the capture's archive list) at `offset`. */
export interface Source {
  readonly tar: number;
  readonly offset: number;
}

export interface EntryRecord extends WalkEntry {
  /** Undefined: no trustworthy copy yet (it must be read again). */
  readonly src: Source | undefined;
}

const KINDS: readonly Kind[] = ["file", "dir", "symlink", "char", "block", "fifo"];
const FIXED = 1 + 8 * 8 + 4 * 4 + 4; // kind, 8 doubles, 4 u32, i32

/** Encodes a record's fixed part (its stat and source) into `b` at `o`; returns the end. */
function encodeFixed(b: Buffer, o: number, s: EntryStat, src: Source | undefined): number {
  b[o++] = KINDS.indexOf(s.kind);
  o = b.writeDoubleLE(s.dev, o);
  o = b.writeDoubleLE(s.ino, o);
  o = b.writeDoubleLE(s.size, o);
  o = b.writeDoubleLE(s.blocks, o);
  o = b.writeDoubleLE(s.rdev, o);
  o = b.writeDoubleLE(s.mtimeMs, o);
  o = b.writeDoubleLE(s.ctimeMs, o);
  o = b.writeDoubleLE(src?.offset ?? -1, o);
  o = b.writeUInt32LE(s.perm, o);
  o = b.writeUInt32LE(s.uid, o);
  o = b.writeUInt32LE(s.gid, o);
  o = b.writeUInt32LE(s.nlink, o);
  return b.writeInt32LE(src?.tar ?? -1, o);
}

/** Encodes a record into `b` at `at` (room checked by the caller); returns the end. */
function encodeInto(b: Buffer, at: number, r: EntryRecord): number {
  const len = b.write(r.path, at + 2, "latin1");
  b.writeUInt16LE(len, at);
  return encodeFixed(b, at + 2 + len, r.stat, r.src);
}

// The byte ranges of the fixed part that sameStat compares (kind, dev, ino, size; rdev, mtime, ctime;
// perm, uid, gid, nlink): all but the allocated blocks and the source.
const SAME_STAT_RANGES: readonly (readonly [number, number])[] = [
  [0, 25],
  [33, 57],
  [65, 81],
];
const TAR_AT = 81;

function decode(b: Buffer, at: number): { rec: EntryRecord; next: number } | undefined {
  if (at + 2 > b.length) return undefined;
  const len = b.readUInt16LE(at);
  const end = at + 2 + len + FIXED;
  if (end > b.length) return undefined;
  const path = b.toString("latin1", at + 2, at + 2 + len);
  const o = at + 2 + len;
  const offset = b.readDoubleLE(o + 57);
  const tar = b.readInt32LE(o + 81);
  const stat: EntryStat = {
    kind: KINDS[b[o] ?? 0] ?? "file",
    dev: b.readDoubleLE(o + 1),
    ino: b.readDoubleLE(o + 9),
    size: b.readDoubleLE(o + 17),
    blocks: b.readDoubleLE(o + 25),
    rdev: b.readDoubleLE(o + 33),
    mtimeMs: b.readDoubleLE(o + 41),
    ctimeMs: b.readDoubleLE(o + 49),
    perm: b.readUInt32LE(o + 65),
    uid: b.readUInt32LE(o + 69),
    gid: b.readUInt32LE(o + 73),
    nlink: b.readUInt32LE(o + 77),
  };
  return { rec: { path, stat, src: tar < 0 ? undefined : { tar, offset } }, next: end };
}

/** Appends records to a file through a 1 MiB buffer. */
export class RecordWriter {
  private readonly fd: number;
  private readonly buf = Buffer.allocUnsafe(1024 * 1024);
  private used = 0;
  count = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, "w", 0o600);
  }

  add(r: EntryRecord): void {
    // a path is at most MAX_PATH_BYTES (checked by the walk): a record always fits an empty buffer
    if (this.used + 2 + r.path.length + FIXED > this.buf.length) this.flush();
    this.used = encodeInto(this.buf, this.used, r);
    this.count++;
  }
  /** Appends the reader's current record as it is, bytes copied (an entry reused unchanged). */
  addCurrent(r: RecordReader): void {
    const raw = r.raw();
    if (raw === undefined) throw new Error("records: no current record to copy");
    if (this.used + raw.length > this.buf.length) this.flush();
    this.used += raw.copy(this.buf, this.used);
    this.count++;
  }
  private flush(): void {
    let off = 0;
    while (off < this.used) off += writeSync(this.fd, this.buf, off, this.used - off);
    this.used = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

/**
 * Reads records back in order; `peek` and `next` let a merge advance it against another stream. The
 * current record is decoded only when asked for: `path`, `sameStatAs` and RecordWriter.addCurrent
 * work on its bytes (a frozen walk reuses most records unchanged).
 */
export class RecordReader {
  private readonly fd: number;
  /** Holds a whole record of the longest path and more (a path is at most MAX_PATH_BYTES). */
  private readonly store = Buffer.allocUnsafe(1024 * 1024);
  private buf = this.store.subarray(0, 0);
  /** Start and end of the current record in `buf` (end -1: none, the end of the file). */
  private at = 0;
  private end = -1;
  private eof = false;
  private headPath: string | undefined;
  private head: EntryRecord | undefined;
  private readonly probe = Buffer.allocUnsafe(FIXED);

  constructor(path: string) {
    this.fd = openSync(path, "r");
    this.load(0);
  }

  /** Makes the record starting at `from` current, reading more of the file as needed. */
  private load(from: number): void {
    this.at = from;
    this.headPath = undefined;
    this.head = undefined;
    for (;;) {
      if (this.at + 2 <= this.buf.length) {
        const end = this.at + 2 + this.buf.readUInt16LE(this.at) + FIXED;
        if (end <= this.buf.length) {
          this.end = end;
          return;
        }
      }
      if (this.eof) {
        this.end = -1;
        return;
      }
      // the unread rest moves to the front of the one reused buffer, the file's next bytes after it
      // (no buffer per refill: the views handed out are valid only until the reader moves)
      const rest = this.buf.length - this.at;
      this.store.copy(this.store, 0, this.at, this.buf.length);
      const got = readSync(this.fd, this.store, rest, this.store.length - rest, null);
      if (got === 0) this.eof = true;
      this.buf = this.store.subarray(0, rest + got);
      this.at = 0;
    }
  }

  /** The current record's path, or undefined at the end. */
  path(): string | undefined {
    if (this.end < 0) return undefined;
    this.headPath ??= this.buf.toString("latin1", this.at + 2, this.at + 2 + this.buf.readUInt16LE(this.at));
    return this.headPath;
  }

  /** The current record's bytes (valid until the reader moves). */
  raw(): Buffer | undefined {
    return this.end < 0 ? undefined : this.buf.subarray(this.at, this.end);
  }

  /** The current record has a copy and the same stat as `s` (sameStat, compared as encoded bytes). */
  sameStatAs(s: EntryStat): boolean {
    if (this.end < 0) return false;
    const o = this.end - FIXED;
    if (this.buf.readInt32LE(o + TAR_AT) < 0) return false;
    encodeFixed(this.probe, 0, s, undefined);
    for (const [a, b] of SAME_STAT_RANGES) if (this.probe.compare(this.buf, o + a, o + b, a, b) !== 0) return false;
    return true;
  }

  peek(): EntryRecord | undefined {
    if (this.end < 0) return undefined;
    this.head ??= decode(this.buf, this.at)?.rec;
    return this.head;
  }

  next(): EntryRecord | undefined {
    const h = this.peek();
    if (h !== undefined) this.load(this.end);
    return h;
  }

  /** Moves past the current record without decoding it. */
  skip(): void {
    if (this.end >= 0) this.load(this.end);
  }

  close(): void {
    closeSync(this.fd);
  }
}

/**
 * The canonical order of paths (a directory, then its children, siblings by their bytes): compares
 * component by component, a `/` sorting before every other byte.
 */
export function comparePaths(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x === 0x2f) return -1;
    if (y === 0x2f) return 1;
    return x - y;
  }
  return a.length - b.length;
}

/** Same entry, unchanged: every stat field a change of content, metadata or identity moves. */
export function sameStat(a: EntryStat, b: EntryStat): boolean {
  return (
    a.kind === b.kind &&
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.perm === b.perm &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.nlink === b.nlink &&
    a.rdev === b.rdev &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs
  );
}
