// A small, binary-safe tar codec (POSIX ustar headers + PAX extended headers), reading and writing.
//
// Why not tar-stream for this: its PAX support decodes and encodes record values as UTF-8 strings,
// which corrupts binary extended attributes (security.capability, for one) — and xattrs are part of a
// layer's contents. Names and link names are kept as latin1 strings so that every byte of a file name
// survives the round trip unchanged (only ASCII separators are ever inspected).
import { readSync } from "node:fs";

export type TarType = "file" | "link" | "symlink" | "char" | "block" | "dir" | "fifo";

export interface TarHeader {
  name: string;
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch, possibly fractional. */
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes (PAX `SCHILY.xattr.<name>`), values as raw bytes. */
  xattrs: Map<string, Buffer>;
  /** Other PAX records, raw. */
  pax: Map<string, Buffer>;
  /** Exact times in nanoseconds from PAX records (GNU tar writes them), when the archive has them. */
  mtimeNs?: bigint;
  ctimeNs?: bigint;
}

const TYPE_FLAGS: Record<TarType, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};
const FLAG_TYPES: Record<string, TarType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

export const BLOCK = 512;
const XATTR = "SCHILY.xattr.";

export function emptyHeader(name: string, type: TarType): TarHeader {
  return {
    name,
    type,
    mode: type === "dir" ? 0o755 : 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    linkname: "",
    devmajor: 0,
    devminor: 0,
    xattrs: new Map(),
    pax: new Map(),
  };
}

// ---- writing ------------------------------------------------------------------------------------

/** A PAX record's length field: the decimal length of the whole record, itself included. */
function paxLength(key: string, valueBytes: number): number {
  const body = 1 + key.length + 1 + valueBytes + 1; // " key=value\n" (keys are latin1: a byte per char)
  let len = body + 1;
  while (String(len).length + body !== len) len = String(len).length + body;
  return len;
}

/** Writes `<len> <key>=<value>\n` at `at`; returns the end. */
function writePax(buf: Buffer, at: number, key: string, value: Buffer | string, len: number): number {
  let o = at + buf.write(`${len} ${key}=`, at, "latin1");
  o += typeof value === "string" ? buf.write(value, o, "latin1") : value.copy(buf, o);
  buf[o] = 0x0a;
  return o + 1;
}

/** An unsigned octal field: width-1 digits, zero-padded, and a NUL (false, and nothing written, when it does not fit). */
function writeOctal(buf: Buffer, off: number, width: number, value: number): boolean {
  let v = Math.floor(value);
  if (v >= 8 ** (width - 1)) return false;
  buf[off + width - 1] = 0;
  for (let i = off + width - 2; i >= off; i--) {
    buf[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  return true;
}

/** A ustar header block into `buf` at `at` (zero-filled by the caller). */
function ustarInto(buf: Buffer, at: number, h: TarHeader, mode: number, name: string, linkname: string, size: number, flag: string): void {
  buf.write(name, at, 100, "latin1");
  writeOctal(buf, at + 100, 8, mode & 0o7777);
  writeOctal(buf, at + 108, 8, Math.min(h.uid, 0o7777777));
  writeOctal(buf, at + 116, 8, Math.min(h.gid, 0o7777777));
  writeOctal(buf, at + 124, 12, size);
  writeOctal(buf, at + 136, 12, Math.max(0, Math.min(Math.floor(h.mtime), 0o77777777777)));
  buf.fill(0x20, at + 148, at + 156);
  buf.write(flag, at + 156, "latin1");
  buf.write(linkname, at + 157, 100, "latin1");
  buf.write("ustar\u000000", at + 257, "latin1");
  writeOctal(buf, at + 329, 8, h.devmajor);
  writeOctal(buf, at + 337, 8, h.devminor);
  writeOctal(buf, at + 148, 7, checksum(buf, at));
  buf[at + 155] = 0x20;
}

/** Sum of a header block's bytes (at `at`), the checksum field counted as spaces. */
function checksum(block: Buffer, at = 0): number {
  let sum = 8 * 0x20;
  for (let i = at; i < at + 148; i++) sum += block[i] as number;
  for (let i = at + 156; i < at + BLOCK; i++) sum += block[i] as number;
  return sum;
}

const ZERO_BLOCK = Buffer.alloc(BLOCK);

function pad(n: number): number {
  return (BLOCK - (n % BLOCK)) % BLOCK;
}

const byKey = ([a]: [string, Buffer], [b]: [string, Buffer]): number => (a < b ? -1 : a > b ? 1 : 0);

/** Header blocks (a PAX extended header first when needed) for one entry, in one buffer. */
export function encodeHeader(h: TarHeader): Buffer {
  const name = h.type === "dir" && !h.name.endsWith("/") ? `${h.name}/` : h.name;
  const records: [string, Buffer | string][] = [];
  if (name.length > 100) records.push(["path", name]);
  if (h.linkname.length > 100) records.push(["linkpath", h.linkname]);
  if (h.uid > 0o7777777) records.push(["uid", String(h.uid)]);
  if (h.gid > 0o7777777) records.push(["gid", String(h.gid)]);
  if (h.size > 0o77777777777) records.push(["size", String(h.size)]);
  if (!Number.isInteger(h.mtime) || h.mtime > 0o77777777777 || h.mtime < 0) records.push(["mtime", formatTime(h.mtime)]);
  for (const r of h.pax) records.push(r);
  if (h.xattrs.size > 0) for (const [k, v] of [...h.xattrs].sort(byKey)) records.push([`${XATTR}${k}`, v]);
  const flag = TYPE_FLAGS[h.type];
  const size = h.type === "file" ? h.size : 0;
  const shortName = name.length > 100 ? name.slice(0, 99) : name;
  const shortLink = h.linkname.slice(0, 100);
  const mainSize = size > 0o77777777777 ? 0 : size;
  if (records.length === 0) {
    const buf = Buffer.alloc(BLOCK);
    ustarInto(buf, 0, h, h.mode, shortName, shortLink, mainSize, flag);
    return buf;
  }
  const lengths = records.map(([k, v]) => paxLength(k, typeof v === "string" ? v.length : v.length));
  const bodyLength = lengths.reduce((n, l) => n + l, 0);
  const mainAt = BLOCK + bodyLength + pad(bodyLength);
  const buf = Buffer.alloc(mainAt + BLOCK);
  const paxName = `PaxHeaders/${shortName.replace(/\/$/, "")}`.slice(0, 100);
  ustarInto(buf, 0, h, 0o644, paxName, "", bodyLength, "x");
  let o = BLOCK;
  for (const [i, [k, v]] of records.entries()) o = writePax(buf, o, k, v, lengths[i] as number);
  ustarInto(buf, mainAt, h, h.mode, shortName, shortLink, mainSize, flag);
  return buf;
}

function formatTime(t: number): string {
  if (Number.isInteger(t)) return String(t);
  const s = Math.floor(t);
  const ns = Math.round((t - s) * 1e9);
  return ns === 0 ? String(s) : `${s}.${String(ns).padStart(9, "0").replace(/0+$/, "")}`;
}

export function paddingFor(size: number): Buffer {
  return ZERO_BLOCK.subarray(0, pad(size)); // read-only: shared
}

/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

// ---- reading ------------------------------------------------------------------------------------

/** What the tar reader needs from its input: exact reads, chunks, skips, and the offset reached. */
interface Bytes {
  position: number;
  read(n: number): Promise<Buffer | undefined>;
  chunk(max: number): Promise<Buffer>;
  skip(n: number): Promise<void>;
  drain(): Promise<void>;
}

/** Reads exact byte counts from an async stream of chunks. */
class ByteReader implements Bytes {
  private buffered: Buffer[] = [];
  private length = 0;
  private done = false;
  /** Bytes handed out (or skipped) so far, counted from `base`: the archive offset of the next byte. */
  position: number;
  constructor(
    private readonly source: AsyncIterator<Buffer>,
    base = 0,
  ) {
    this.position = base;
  }

  private async fill(n: number): Promise<boolean> {
    while (this.length < n && !this.done) {
      const r = await this.source.next();
      if (r.done === true) {
        this.done = true;
        break;
      }
      const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      this.buffered.push(chunk);
      this.length += chunk.length;
    }
    return this.length >= n;
  }

  /** Exactly n bytes, or undefined at a clean end of stream (throws on a truncated one). */
  async read(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.length === 0) return undefined;
      throw new Error(`tar stream truncated: wanted ${n} bytes, got ${this.length}`);
    }
    const all = this.buffered.length === 1 ? (this.buffered[0] as Buffer) : Buffer.concat(this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.length = rest.length;
    this.position += n;
    return out;
  }

  /** The next chunk of at most max bytes (max > 0); throws at end of stream. */
  async chunk(max: number): Promise<Buffer> {
    if (this.length === 0 && !(await this.fill(1))) throw new Error("tar stream truncated inside an entry");
    const first = this.buffered.shift() as Buffer;
    this.length -= first.length;
    if (first.length <= max) {
      this.position += first.length;
      return first;
    }
    const rest = first.subarray(max);
    this.buffered.unshift(rest);
    this.length += rest.length;
    this.position += max;
    return first.subarray(0, max);
  }

  /**
   * Reads and discards the rest of the source. GNU tar pads an archive to a whole record (10 KiB) after
   * the end marker: a pipe from tar that is not read to its end never ends, its child process never
   * emits 'close', and whoever awaits it waits forever.
   */
  async drain(): Promise<void> {
    this.buffered = [];
    this.length = 0;
    while (!this.done) {
      const r = await this.source.next();
      if (r.done === true) this.done = true;
    }
  }

  async skip(n: number): Promise<void> {
    let left = n;
    while (left > 0) left -= (await this.chunk(left)).length;
  }
}

/**
 * Bytes of an archive file by offset: reads are synchronous preads through a read-ahead buffer, and a
 * skip costs nothing — reading one entry in the middle of a large archive reads only that entry. The
 * `*Sync` methods serve callers that walk an archive entry by entry without a promise per step.
 */
export class FileBytes implements Bytes {
  private buf: Buffer = Buffer.alloc(0);
  private bufAt = 0;
  /** Two read-ahead buffers used in turn (a view of one stays valid while the other is filled), so
   *  reading a large archive makes no garbage. */
  private readonly store: Buffer[] = [];
  private turn = 0;
  constructor(
    private readonly fd: number,
    public position = 0,
    private readonly readAhead = 64 * 1024,
  ) {}

  private fill(n: number): number {
    const rel = this.position - this.bufAt;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const want = Math.max(n, this.readAhead);
    this.turn ^= 1;
    let b = this.store[this.turn];
    if (b === undefined || b.length < want) {
      b = Buffer.allocUnsafe(want);
      this.store[this.turn] = b;
    }
    const got = readSync(this.fd, b, 0, want, this.position);
    this.buf = b.subarray(0, got);
    this.bufAt = this.position;
    return 0;
  }

  /** Exactly n bytes (a view, valid until the second read after this one), or undefined at the end of the file. */
  viewSync(n: number): Buffer | undefined {
    const rel = this.fill(n);
    const avail = this.buf.length - rel;
    if (avail < n) {
      if (avail === 0) return undefined;
      throw new Error(`tar file truncated: wanted ${n} bytes, got ${avail}`);
    }
    this.position += n;
    return this.buf.subarray(rel, rel + n);
  }

  /** The next at most max bytes (a view, valid until the second read after this one); throws at the end of the file. */
  chunkSync(max: number): Buffer {
    const n = Math.min(max, 1024 * 1024);
    const rel = this.fill(Math.min(n, this.readAhead));
    const avail = Math.min(this.buf.length - rel, n);
    if (avail <= 0) throw new Error("tar file truncated inside an entry");
    this.position += avail;
    return this.buf.subarray(rel, rel + avail);
  }

  read(n: number): Promise<Buffer | undefined> {
    try {
      const v = this.viewSync(n);
      return Promise.resolve(v === undefined ? undefined : Buffer.from(v));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  chunk(max: number): Promise<Buffer> {
    try {
      // a copy: whoever reads a body through the stream interface may keep its chunks
      return Promise.resolve(Buffer.from(this.chunkSync(max)));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  skip(n: number): Promise<void> {
    this.position += n;
    return Promise.resolve();
  }

  drain(): Promise<void> {
    return Promise.resolve();
  }
}

function readNumber(buf: Buffer, off: number, width: number): number {
  const first = buf[off] ?? 0;
  if (first & 0x80) {
    // base-256 (GNU): big-endian two's complement, high bit is the marker
    let v = first & 0x7f;
    for (let i = 1; i < width; i++) v = v * 256 + (buf[off + i] ?? 0);
    return v;
  }
  // octal digits, after optional spaces, up to a NUL or space
  const end = off + width;
  let i = off;
  while (i < end && buf[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (c < 0x30 || c > 0x37) break;
    v = v * 8 + (c - 0x30);
  }
  return v;
}

function readString(buf: Buffer, off: number, width: number): string {
  const end = buf.indexOf(0, off);
  return buf.toString("latin1", off, end === -1 || end > off + width ? off + width : end);
}

/** PAX records; the values are views of `body` (copied by whoever keeps one). */
function parsePax(body: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < body.length) {
    let len = 0;
    let sp = pos;
    for (; sp < body.length; sp++) {
      const c = body[sp] as number;
      if (c < 0x30 || c > 0x39) break;
      len = len * 10 + (c - 0x30);
    }
    if (sp === pos || body[sp] !== 0x20 || len <= 0 || pos + len > body.length) throw new Error("malformed PAX record");
    const rec = body.subarray(sp + 1, pos + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new Error("malformed PAX record (no '=')");
    out.set(rec.toString("latin1", 0, eq), rec.subarray(eq + 1));
    pos += len;
  }
  return out;
}

export interface TarEntry {
  header: TarHeader;
  /** The entry's data; must be consumed (or ignored: the reader skips the rest) before the next entry. */
  body: AsyncGenerator<Buffer>;
  /** Archive offset of the entry's first header block (PAX and long-name blocks included); set by readTar. */
  offset?: number;
}

/** Seconds with up to nine decimals (a PAX time) as exact nanoseconds. */
export function paxTimeNs(s: string): bigint | undefined {
  const m = /^(-?)(\d+)(?:\.(\d{1,9})\d*)?$/.exec(s.trim());
  if (m === null) return undefined;
  const ns = BigInt(m[2] ?? "0") * 1_000_000_000n + BigInt((m[3] ?? "").padEnd(9, "0"));
  return m[1] === "-" ? -ns : ns;
}

/** One data segment of a sparse file: `size` bytes at `offset` of the file; the rest are holes. */
interface Segment {
  readonly offset: number;
  readonly size: number;
}

const ZEROS = Buffer.alloc(256 * 1024);

/** Yields `n` zero bytes (a hole) in shared, read-only chunks. */
export async function* zeros(n: number): AsyncGenerator<Buffer> {
  await Promise.resolve();
  let left = n;
  while (left > 0) {
    const k = Math.min(left, ZEROS.length);
    left -= k;
    yield ZEROS.subarray(0, k);
  }
}

/**
 * GNU sparse format 1.0 (what GNU tar writes with `--sparse --format=posix`): the entry's data starts
 * with a map, decimal numbers one per line — the count, then offset and size of each segment — padded
 * to a block; the segments' bytes follow back to back. Returns the map and the bytes it took.
 */
async function readSparseMap(r: Bytes, stored: number): Promise<{ segments: Segment[]; used: number }> {
  const nums: number[] = [];
  let text = "";
  let used = 0;
  let want = 1;
  while (nums.length < want) {
    if (used + BLOCK > stored) throw new Error("malformed sparse map");
    const b = (await r.read(BLOCK)) ?? Buffer.alloc(0);
    used += BLOCK;
    text += b.toString("latin1");
    const lines = text.split("\n");
    text = lines.pop() ?? "";
    for (const l of lines) {
      const v = Number(l);
      if (l === "" || !Number.isSafeInteger(v) || v < 0) throw new Error("malformed sparse map");
      nums.push(v);
      if (nums.length === 1) want = 1 + 2 * v;
      if (nums.length >= want) break;
    }
  }
  const segments: Segment[] = [];
  for (let i = 1; i + 1 < want; i += 2) segments.push({ offset: nums[i] ?? 0, size: nums[i + 1] ?? 0 });
  return { segments, used };
}

/** Applies the PAX records of an entry to its header; returns the GNU sparse real size, if sparse. */
function applyPax(h: TarHeader, pax: Map<string, Buffer>): number | undefined {
  let sparseSize: number | undefined;
  let sparseName: string | undefined;
  for (const [k, v] of pax) {
    if (k === "atime" || k === "hdrcharset" || k === "comment") continue;
    if (k.startsWith(XATTR)) {
      h.xattrs.set(k.slice(XATTR.length), Buffer.from(v));
      continue;
    }
    const s = v.toString("latin1");
    if (k === "path") h.name = s;
    else if (k === "linkpath") h.linkname = s;
    else if (k === "size") h.size = h.type === "file" ? Number(s) : 0;
    else if (k === "uid") h.uid = Number(s);
    else if (k === "gid") h.gid = Number(s);
    else if (k === "mtime") {
      h.mtime = Number(s);
      h.mtimeNs = paxTimeNs(s);
    } else if (k === "ctime") h.ctimeNs = paxTimeNs(s);
    else if (k === "GNU.sparse.major") {
      if (s !== "1") throw new Error(`unsupported GNU sparse format ${s}`);
    } else if (k === "GNU.sparse.realsize") sparseSize = Number(s);
    else if (k === "GNU.sparse.name") sparseName = s;
    else if (k.startsWith("GNU.sparse.")) continue;
    else h.pax.set(k, Buffer.from(v));
  }
  if (sparseSize === undefined) return undefined;
  if (sparseName !== undefined) h.name = sparseName;
  return sparseSize;
}

/**
 * Parses a tar stream entry by entry. PAX (`x`, `g`) and GNU long-name (`L`, `K`) headers are folded
 * in; GNU sparse files (format 1.0) come out as plain files of their full length, holes as zeros.
 * `base` is the archive offset of the stream's first byte (for reading from the middle of a file).
 */
export async function* readTar(source: AsyncIterable<Buffer>, base = 0): AsyncGenerator<TarEntry> {
  yield* readEntries(new ByteReader(source[Symbol.asyncIterator](), base));
}

/**
 * Reads an archive file from `offset` (an entry's `offset`) by preads: skipped data is never read, so
 * a scan of the headers or a read of one entry costs what it uses. The descriptor stays the caller's.
 */
export async function* readTarFile(fd: number | FileBytes, offset = 0): AsyncGenerator<TarEntry> {
  const r = typeof fd === "number" ? new FileBytes(fd, offset) : fd;
  r.position = offset;
  yield* readEntries(r);
}

/** An entry's header, decoded from its header block and the PAX / long-name blocks before it. */
interface Decoded {
  readonly header: TarHeader;
  /** Bytes the archive stores for the entry (a sparse file: its map and its data segments). */
  readonly stored: number;
  /** GNU sparse: the file's real size (the header's size); undefined for every other entry. */
  readonly sparseSize: number | undefined;
}

/** A metadata block (PAX or GNU long name) whose `size` bytes of body must be passed to `meta`. */
interface Meta {
  readonly flag: "x" | "g" | "L" | "K";
  readonly size: number;
}

/** Folds PAX and GNU long-name blocks into the entry header that follows them. */
class HeaderDecoder {
  private global = new Map<string, Buffer>();
  private local = new Map<string, Buffer>();
  private longName: string | undefined;
  private longLink: string | undefined;

  /** A header block (not the end-of-archive zero block). */
  block(block: Buffer): Decoded | Meta {
    if (checksum(block) !== readNumber(block, 148, 8)) throw new Error("tar header checksum mismatch");
    const flag = String.fromCharCode(block[156] ?? 0);
    const size = readNumber(block, 124, 12);
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") return { flag, size };
    const pax = this.global.size === 0 ? this.local : new Map([...this.global, ...this.local]);
    this.local = new Map();
    const type = FLAG_TYPES[flag];
    if (type === undefined) throw new Error(`unsupported tar entry type '${flag}'`);
    const prefix = readString(block, 345, 155);
    const name = this.longName ?? (prefix !== "" ? `${prefix}/${readString(block, 0, 100)}` : readString(block, 0, 100));
    const linkname = this.longLink ?? readString(block, 157, 100);
    this.longName = this.longLink = undefined;
    const h: TarHeader = {
      name,
      type,
      mode: readNumber(block, 100, 8),
      uid: readNumber(block, 108, 8),
      gid: readNumber(block, 116, 8),
      size: type === "file" ? size : 0,
      mtime: readNumber(block, 136, 12),
      linkname,
      devmajor: readNumber(block, 329, 8),
      devminor: readNumber(block, 337, 8),
      xattrs: new Map(),
      pax: new Map(),
    };
    const plainStored = type === "file" ? h.size : size; // what the archive holds for this entry
    const sparseSize = applyPax(h, pax);
    if (sparseSize !== undefined) h.size = sparseSize;
    return { header: h, stored: sparseSize !== undefined ? size : plainStored, sparseSize };
  }

  /** A metadata block's body (without its padding). */
  meta(m: Meta, body: Buffer): void {
    if (m.flag === "x") {
      // a copy: `body` may be a view of a read buffer that the next reads reuse
      const records = parsePax(Buffer.from(body));
      this.local = this.local.size === 0 ? records : new Map([...this.local, ...records]);
    } else if (m.flag === "g") {
      // kept for the rest of the archive: copies, not views of a read buffer
      for (const [k, v] of parsePax(body)) this.global.set(k, Buffer.from(v));
    }
    else if (m.flag === "L") this.longName = body.toString("latin1").replace(/\0+$/, "");
    else this.longLink = body.toString("latin1").replace(/\0+$/, "");
  }
}

/** One entry of an archive file, read synchronously: its header and where its stored bytes are. */
export interface EntryAt extends Decoded {
  /** Offset of the entry's first header block (PAX and long-name blocks included). */
  readonly offset: number;
  /** Offset of its stored data. */
  readonly dataAt: number;
  /** Offset of the next entry. */
  readonly next: number;
}

/**
 * The entry starting at `offset` of an archive file (undefined at the end of the archive), without a
 * promise or a generator: what a pass over hundreds of thousands of entries needs. Its data is read
 * with `fb.chunkSync` from `dataAt` (or, when sparse, through readTarFile).
 */
export function readEntryAt(fb: FileBytes, offset: number): EntryAt | undefined {
  fb.position = offset;
  const dec = new HeaderDecoder();
  for (;;) {
    const block = fb.viewSync(BLOCK);
    // a header's checksum field never starts with a NUL: only then can it be the end-of-archive block
    if (block === undefined || (block[148] === 0 && block.equals(ZERO_BLOCK))) return undefined;
    const d = dec.block(block);
    if ("flag" in d) {
      const body = fb.viewSync(d.size + pad(d.size));
      dec.meta(d, (body ?? Buffer.alloc(0)).subarray(0, d.size));
      continue;
    }
    const dataAt = fb.position;
    return { header: d.header, stored: d.stored, sparseSize: d.sparseSize, offset, dataAt, next: dataAt + d.stored + pad(d.stored) };
  }
}

async function* readEntries(r: Bytes): AsyncGenerator<TarEntry> {
  const dec = new HeaderDecoder();
  let offset = r.position;
  for (;;) {
    const block = await r.read(BLOCK);
    if (block === undefined) return;
    if (block.equals(ZERO_BLOCK)) {
      await r.drain(); // end of archive: the rest is padding, but the source must end
      return;
    }
    const d = dec.block(block);
    if ("flag" in d) {
      const body = (await r.read(d.size + pad(d.size)))?.subarray(0, d.size) ?? Buffer.alloc(0);
      dec.meta(d, body);
      continue;
    }
    const { header: h, stored: storedTotal, sparseSize } = d;
    const state = { left: storedTotal };
    async function* plain(): AsyncGenerator<Buffer> {
      while (state.left > 0) {
        const c = await r.chunk(state.left);
        state.left -= c.length;
        yield c;
      }
    }
    async function* sparse(realSize: number): AsyncGenerator<Buffer> {
      const map = await readSparseMap(r, state.left);
      state.left -= map.used;
      let at = 0;
      for (const seg of map.segments) {
        if (seg.offset < at || seg.offset + seg.size > realSize) throw new Error(`malformed sparse map for ${h.name}`);
        yield* zeros(seg.offset - at);
        let need = seg.size;
        while (need > 0) {
          if (state.left <= 0) throw new Error(`sparse entry ${h.name} is truncated`);
          const c = await r.chunk(Math.min(need, state.left));
          need -= c.length;
          state.left -= c.length;
          yield c;
        }
        at = seg.offset + seg.size;
      }
      yield* zeros(realSize - at);
    }
    yield { header: h, body: sparseSize !== undefined ? sparse(sparseSize) : plain(), offset };
    // skip whatever the consumer left unread, then the padding
    await r.skip(state.left + pad(storedTotal));
    offset = r.position;
  }
}
