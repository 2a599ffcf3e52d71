// The OCI layer form of an overlay upper directory's raw capture (./upper.ts), made after the thaw and
// streamed into the compressor (the uncompressed layer is never stored on the scratch volume).
//
// Reading (./rawtar.ts): GNU tar reads the upper directory (`--xattrs --xattrs-include=*`, sorted, numeric owners,
// hard links detected). Node has no extended-attribute API and native addons are not wanted in the
// committer, and GNU tar — present in every Debian/Ubuntu-based image — is the one ubiquitous tool that
// reads all xattrs (binary-safe, `trusted.*` included, which needs CAP_SYS_ADMIN: the commit Job is
// privileged) together with modes, owners, times, links and device numbers in one pass.
//
// Writing: our own tar codec (./tar.ts) rewrites the stream into the OCI form:
// - a whiteout (character device 0:0, possibly hard-linked to overlayfs' shared whiteout) → `.wh.<name>`;
// - a directory with `<overlay>.opaque=y` → the directory plus `<dir>/.wh..wh..opq`;
// - `<overlay>.*` xattrs are dropped (`trusted.overlay.` or, on `userxattr` mounts, `user.overlay.`),
//   and so is `security.selinux` (the host's labelling, assigned again where the image is unpacked);
//   every other xattr (user.*, security.capability, ACLs…) is kept, binary values intact;
// - a `<overlay>.redirect` or `<overlay>.metacopy` xattr means the upper directory alone does not hold
//   the changes: the capture stops with NeedsDiffService and the caller uses containerd's Diff service.
import { createHash } from "node:crypto";
import { END_OF_ARCHIVE, encodeHeader, paddingFor, type TarEntry, type TarHeader } from "./tar.js";

export const TRUSTED_OVERLAY = "trusted.overlay.";
export const USER_OVERLAY = "user.overlay.";

/** The upper directory cannot be read directly (overlay redirect_dir/metacopy in use). */
export class NeedsDiffService extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "NeedsDiffService";
  }
}

/** The captured layer would exceed the scratch space. */
export class ScratchFullError extends Error {
  constructor(
    readonly limitBytes: number,
    what: string,
  ) {
    super(`scratch space exhausted: ${what} exceeds the ${limitBytes} bytes available (SNAPSHOT_SCRATCH_LIMIT_BYTES / SNAPSHOT_SCRATCH_DIR)`);
    this.name = "ScratchFullError";
  }
}

function basename(p: string): string {
  const i = p.lastIndexOf("/");
  return i === -1 ? p : p.slice(i + 1);
}
function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i === -1 ? "" : p.slice(0, i);
}
function join(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

async function* noBody(): AsyncGenerator<Buffer> {
  // empty
}

function normalise(name: string): string {
  let n = name;
  while (n.startsWith("./")) n = n.slice(2);
  if (n === ".") n = "";
  return n.replace(/\/+$/, "");
}

/**
 * Converts raw overlay entries into OCI layer entries one at a time (see the file comment); it keeps
 * what later entries need (the whiteouts seen, for their hard links). Pure; unit-tested through
 * toOciLayer with synthetic archives.
 */
export class OciConverter {
  private readonly whiteouts = new Set<string>();
  constructor(private readonly overlayPrefix = TRUSTED_OVERLAY) {}

  /**
   * The OCI entries for one raw entry: none (the upper directory itself), one, or a directory and its
   * opaque marker. `body`: the first one carries the raw entry's data.
   */
  convert(header: TarHeader): { readonly headers: readonly TarHeader[]; readonly body: boolean } {
    const name = normalise(header.name);
    if (name === "") return { headers: [], body: false };
    const xattrs = new Map<string, Buffer>();
    let opaque = false;
    for (const [k, v] of header.xattrs) {
      if (k === "security.selinux") continue;
      if (!k.startsWith(this.overlayPrefix)) {
        xattrs.set(k, v);
        continue;
      }
      const what = k.slice(this.overlayPrefix.length);
      if (what === "redirect" || what === "metacopy") {
        throw new NeedsDiffService(`overlay ${what} in use on ${name}: the upper directory alone does not hold the changes`);
      }
      if (what === "opaque" && v.toString("latin1") === "y") opaque = true;
    }
    const h: TarHeader = { ...header, name, linkname: normalise(header.linkname), xattrs };
    if (h.type === "dir") h.linkname = "";
    const isWhiteout =
      (h.type === "char" && h.devmajor === 0 && h.devminor === 0) || (h.type === "link" && this.whiteouts.has(h.linkname));
    if (isWhiteout) {
      this.whiteouts.add(name);
      const wh: TarHeader = {
        ...h,
        name: join(dirname(name), `.wh.${basename(name)}`),
        type: "file",
        mode: 0,
        size: 0,
        linkname: "",
        devmajor: 0,
        devminor: 0,
        xattrs: new Map(),
      };
      return { headers: [wh], body: false };
    }
    if (h.type === "symlink") h.linkname = header.linkname; // a symlink target is kept verbatim
    if (h.type !== "dir" || !opaque) return { headers: [h], body: true };
    const opq: TarHeader = {
      ...h,
      name: join(name, ".wh..wh..opq"),
      type: "file",
      mode: 0,
      size: 0,
      xattrs: new Map(),
      pax: new Map(),
    };
    return { headers: [h, opq], body: true };
  }
}

/** Rewrites a tar stream of an overlay upper directory into OCI layer entries (OciConverter). */
export async function* toOciLayer(entries: AsyncIterable<TarEntry>, overlayPrefix = TRUSTED_OVERLAY): AsyncGenerator<TarEntry> {
  const conv = new OciConverter(overlayPrefix);
  for await (const { header, body } of entries) {
    const { headers, body: keep } = conv.convert(header);
    for (const [i, h] of headers.entries()) yield { header: h, body: i === 0 && keep ? body : noBody() };
  }
}

export interface LayerBytes {
  /** The layer's tar, in pieces of at least 256 KiB (few, large writes into the compressor). */
  readonly chunks: AsyncGenerator<Buffer>;
  /** sha256 of the uncompressed tar (the layer's diff_id) and its size, once `chunks` has ended. */
  result(): { readonly diffId: string; readonly size: number; readonly entries: number };
}

const PIECE = 1024 * 1024;

/**
 * Writes a layer's tar into pieces of 1 MiB, hashing as it goes (the uncompressed layer is never
 * stored): `entry` for each header, `data` for a file's bytes, `pieces` to collect what is full.
 */
export class LayerEncoder {
  private readonly hash = createHash("sha256");
  private size = 0;
  private count = 0;
  private buf = Buffer.allocUnsafe(PIECE);
  private used = 0;
  private full: Buffer[] = [];
  /** The current file entry: its name, and the bytes of data still expected. */
  private current = "";
  private left = 0;
  /** The current file's padding, written once its last byte of data is in. */
  private pad: Buffer | undefined;
  private ended = false;

  private put(b: Buffer): void {
    let at = 0;
    while (at < b.length) {
      const n = b.copy(this.buf, this.used, at);
      this.used += n;
      at += n;
      if (this.used === PIECE) {
        this.hash.update(this.buf);
        this.full.push(this.buf);
        this.buf = Buffer.allocUnsafe(PIECE); // the full piece now belongs to the consumer
        this.used = 0;
      }
    }
    this.size += b.length;
  }

  private closeEntry(): void {
    if (this.left !== 0) throw new Error(`tar entry ${this.current}: ${this.left} bytes of data missing`);
  }

  entry(h: TarHeader): void {
    this.closeEntry();
    this.count++;
    this.put(encodeHeader(h));
    this.pad = undefined;
    if (h.type !== "file") return;
    this.current = h.name;
    this.left = h.size;
    const p = paddingFor(h.size);
    if (p.length > 0) this.pad = p;
  }

  data(b: Buffer): void {
    if (b.length > this.left) throw new Error(`tar entry ${this.current}: more data than its ${this.left} bytes left`);
    this.put(b);
    this.left -= b.length;
    if (this.left === 0 && this.pad !== undefined) {
      this.put(this.pad);
      this.pad = undefined;
    }
  }

  /** The pieces filled since the last call (each handed out once). */
  pieces(): Buffer[] {
    const out = this.full;
    this.full = [];
    return out;
  }

  /** Ends the archive; returns the last pieces. */
  finish(): Buffer[] {
    this.closeEntry();
    this.put(END_OF_ARCHIVE);
    if (this.used > 0) {
      const last = this.buf.subarray(0, this.used);
      this.hash.update(last);
      this.full.push(last);
      this.used = 0;
    }
    this.ended = true;
    return this.pieces();
  }

  private digest: string | undefined;

  result(): { readonly diffId: string; readonly size: number; readonly entries: number } {
    if (!this.ended) throw new Error("layer: result() before the stream ended");
    this.digest ??= `sha256:${this.hash.digest("hex")}`;
    return { diffId: this.digest, size: this.size, entries: this.count };
  }
}

/** Encodes entries as a tar stream (LayerEncoder). */
export function encodeLayer(entries: AsyncIterable<TarEntry>): LayerBytes {
  const enc = new LayerEncoder();
  async function* chunks(): AsyncGenerator<Buffer> {
    for await (const { header, body } of entries) {
      enc.entry(header);
      for await (const chunk of body) {
        if (header.type === "file") enc.data(chunk);
        yield* enc.pieces();
      }
      yield* enc.pieces();
    }
    yield* enc.finish();
  }
  return { chunks: chunks(), result: () => enc.result() };
}
