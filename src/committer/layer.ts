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
 * Rewrites a tar stream of an overlay upper directory into OCI layer entries (see the file comment).
 * Pure apart from consuming the entries; unit-tested with synthetic archives.
 */
export async function* toOciLayer(entries: AsyncIterable<TarEntry>, overlayPrefix = TRUSTED_OVERLAY): AsyncGenerator<TarEntry> {
  const whiteouts = new Set<string>();
  for await (const { header, body } of entries) {
    const name = normalise(header.name);
    if (name === "") continue; // the upper directory itself
    const xattrs = new Map<string, Buffer>();
    let opaque = false;
    for (const [k, v] of header.xattrs) {
      if (k === "security.selinux") continue;
      if (!k.startsWith(overlayPrefix)) {
        xattrs.set(k, v);
        continue;
      }
      const what = k.slice(overlayPrefix.length);
      if (what === "redirect" || what === "metacopy") {
        throw new NeedsDiffService(`overlay ${what} in use on ${name}: the upper directory alone does not hold the changes`);
      }
      if (what === "opaque" && v.toString("latin1") === "y") opaque = true;
    }
    const h: TarHeader = { ...header, name, linkname: normalise(header.linkname), xattrs };
    if (h.type === "dir") h.linkname = "";
    const isWhiteout =
      (h.type === "char" && h.devmajor === 0 && h.devminor === 0) || (h.type === "link" && whiteouts.has(h.linkname));
    if (isWhiteout) {
      whiteouts.add(name);
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
      yield { header: wh, body: noBody() };
      continue;
    }
    if (h.type === "symlink") h.linkname = header.linkname; // a symlink target is kept verbatim
    yield { header: h, body };
    if (h.type === "dir" && opaque) {
      const opq: TarHeader = {
        ...h,
        name: join(name, ".wh..wh..opq"),
        type: "file",
        mode: 0,
        size: 0,
        xattrs: new Map(),
        pax: new Map(),
      };
      yield { header: opq, body: noBody() };
    }
  }
}

export interface LayerBytes {
  /** The layer's tar, in pieces of at least 256 KiB (few, large writes into the compressor). */
  readonly chunks: AsyncGenerator<Buffer>;
  /** sha256 of the uncompressed tar (the layer's diff_id) and its size, once `chunks` has ended. */
  result(): { readonly diffId: string; readonly size: number; readonly entries: number };
}

/** Encodes entries as a tar stream, hashing as it goes (the uncompressed layer is never stored). */
export function encodeLayer(entries: AsyncIterable<TarEntry>): LayerBytes {
  const hash = createHash("sha256");
  let size = 0;
  let count = 0;
  let done = false;
  async function* chunks(): AsyncGenerator<Buffer> {
    let parts: Buffer[] = [];
    let have = 0;
    const put = (b: Buffer): Buffer | undefined => {
      hash.update(b);
      size += b.length;
      parts.push(b);
      have += b.length;
      if (have < 256 * 1024) return undefined;
      const out = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      parts = [];
      have = 0;
      return out;
    };
    for await (const { header, body } of entries) {
      count++;
      let out = put(encodeHeader(header));
      if (out !== undefined) yield out;
      let n = 0;
      for await (const chunk of body) {
        n += chunk.length;
        out = put(chunk); // the readers hand out fresh (or read-only) buffers: no copy needed
        if (out !== undefined) yield out;
      }
      if (header.type === "file") {
        if (n !== header.size) throw new Error(`tar entry ${header.name}: expected ${header.size} bytes, got ${n}`);
        const p = paddingFor(n);
        if (p.length > 0) {
          out = put(p);
          if (out !== undefined) yield out;
        }
      }
    }
    const last = put(END_OF_ARCHIVE);
    if (last !== undefined) yield last;
    if (parts.length > 0) yield Buffer.concat(parts);
    done = true;
  }
  return {
    chunks: chunks(),
    result: () => {
      if (!done) throw new Error("layer: result() before the stream ended");
      return { diffId: `sha256:${hash.digest("hex")}`, size, entries: count };
    },
  };
}
