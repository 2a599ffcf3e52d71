// Capture of an overlay upper directory as an uncompressed OCI layer tar.
//
// Reading: GNU tar walks the upper directory (`--xattrs --xattrs-include=*`, sorted, numeric owners,
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
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { END_OF_ARCHIVE, encodeHeader, paddingFor, readTar, type TarEntry, type TarHeader } from "./tar.js";

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

export interface LayerWriteResult {
  /** sha256 of the uncompressed tar (the layer's diff_id). */
  readonly diffId: string;
  readonly size: number;
  readonly entries: number;
}

/** Writes entries as a tar to `path`, hashing as it goes, stopping when `limitBytes` would be passed. */
export async function writeTarFile(
  entries: AsyncIterable<TarEntry>,
  path: string,
  limitBytes: number,
  signal?: AbortSignal,
): Promise<LayerWriteResult> {
  // A large buffer lets the stream gather the many small header/body/padding pieces into few writev
  // calls (the default 16 KiB made capture — inside the freeze — several times slower than tar's own
  // read of the directory); memory stays bounded by it.
  const out = createWriteStream(path, { mode: 0o600, highWaterMark: 4 * 1024 * 1024 });
  const hash = createHash("sha256");
  let size = 0;
  let count = 0;
  const write = async (b: Buffer): Promise<void> => {
    signal?.throwIfAborted();
    size += b.length;
    if (size > limitBytes) throw new ScratchFullError(limitBytes, "the captured layer");
    hash.update(b);
    if (!out.write(b)) await once(out, "drain", { signal });
  };
  try {
    for await (const { header, body } of entries) {
      count++;
      await write(encodeHeader(header));
      let n = 0;
      for await (const chunk of body) {
        n += chunk.length;
        await write(chunk);
      }
      if (header.type === "file") {
        if (n !== header.size) throw new Error(`tar entry ${header.name}: expected ${header.size} bytes, got ${n}`);
        const p = paddingFor(n);
        if (p.length > 0) await write(p);
      }
    }
    await write(END_OF_ARCHIVE);
    out.end();
    await once(out, "finish");
  } catch (e) {
    out.destroy();
    throw e;
  }
  return { diffId: `sha256:${hash.digest("hex")}`, size, entries: count };
}

/** GNU tar's arguments to archive a directory's contents with everything a layer needs. */
export function gnuTarArgs(dir: string): string[] {
  return [
    "--create",
    "--file=-",
    "--format=posix",
    "--xattrs",
    "--xattrs-include=*",
    "--sort=name",
    "--numeric-owner",
    "--warning=no-file-ignored", // sockets cannot be archived (and do not belong in an image)
    "--directory",
    dir,
    ".",
  ];
}

/** Captures an overlay upper directory into an OCI layer tar at `outPath`. */
export async function captureUpperdir(
  upperdir: string,
  outPath: string,
  opts: { limitBytes: number; overlayPrefix?: string; signal?: AbortSignal; tarBinary?: string },
): Promise<LayerWriteResult> {
  const child = spawn(opts.tarBinary ?? "tar", gnuTarArgs(upperdir), {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LC_ALL: "C" },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (s: string) => {
    if (stderr.length < 4096) stderr += s;
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      resolve(code);
    });
  });
  // The watchdog (or a signal) stops the reader at once, even while tar is still walking.
  const stop = (): void => {
    child.kill("SIGKILL");
    // a grandchild (a wrapper's child) may still hold the pipes: do not wait for it
    child.stdout.destroy();
    child.stderr.destroy();
  };
  opts.signal?.addEventListener("abort", stop, { once: true });
  try {
    const result = await writeTarFile(
      toOciLayer(readTar(child.stdout as AsyncIterable<Buffer>), opts.overlayPrefix ?? TRUSTED_OVERLAY),
      outPath,
      opts.limitBytes,
      opts.signal,
    );
    const code = await exited;
    if (code !== 0) throw new Error(`tar of ${upperdir} failed (exit ${code}): ${stderr.trim()}`);
    return result;
  } catch (e) {
    child.kill("SIGKILL");
    await exited.catch(() => undefined);
    if (e instanceof Error && "code" in e && e.code === "ENOENT" && "syscall" in e && String(e.syscall).startsWith("spawn")) {
      throw new Error("GNU tar is needed to read the upper directory and was not found on PATH");
    }
    throw e;
  } finally {
    opts.signal?.removeEventListener("abort", stop);
  }
}
