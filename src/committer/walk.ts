// A walk of an upper directory that a hostile sandbox cannot steer: every directory is opened relative
// to its parent's descriptor with O_NOFOLLOW (through /proc/self/fd, as Node has no openat), so a
// directory swapped for a symlink is never followed, and a path of any depth is reached with a short
// name. Names are raw bytes (kept as latin1 strings, one char per byte). The order is canonical —
// depth first, a directory before its children, siblings sorted by their bytes — the order GNU tar's
// `--sort=name` writes, so that walks, indexes and archives of one tree can be merged as streams.
//
// It also refuses, naming the path, what no image may hold: a path longer than an unpacker can create,
// and an entry named like an OCI whiteout (`.wh.<x>` would delete `<x>` when the image is unpacked).
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, type Stats } from "node:fs";
import { setImmediate as yieldToLoop } from "node:timers/promises";

/** Longest path (as seen inside the container, `/a/b…`, in bytes) an image may hold: Linux's PATH_MAX
 *  with its terminating NUL, the most containerd's unpacker can create. */
export const MAX_PATH_BYTES = 4096;

export type Kind = "file" | "dir" | "symlink" | "char" | "block" | "fifo";

export interface EntryStat {
  readonly kind: Kind;
  readonly dev: number;
  readonly ino: number;
  /** Permission bits (07777). */
  readonly perm: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  /** 512-byte blocks allocated (sparse files have fewer than their size). */
  readonly blocks: number;
  readonly nlink: number;
  readonly rdev: number;
  /** Milliseconds, fractional: a double resolves ~0.2 µs today, far finer than the racy margin. */
  readonly mtimeMs: number;
  readonly ctimeMs: number;
}

export interface WalkEntry {
  /** Relative to the walked directory, no leading `./`, bytes as latin1. */
  readonly path: string;
  readonly stat: EntryStat;
}

/** The tree holds something no image may hold; the message names the path. */
export class HostileTreeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HostileTreeError";
  }
}

/** A path for messages: printable, and short enough for a termination message. */
export function displayPath(rel: string): string {
  const bytes = Buffer.from(`/${rel}`, "latin1");
  // eslint-disable-next-line no-control-regex -- control characters are what is replaced
  const text = bytes.toString("utf8").replace(/[\u0000-\u001f\u007f\ufffd]/g, "?");
  return bytes.length > 200 ? `${text.slice(0, 120)}…${text.slice(-60)} (${bytes.length} bytes)` : text;
}

function kindOf(mode: number): Kind | undefined {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFREG:
      return "file";
    case constants.S_IFDIR:
      return "dir";
    case constants.S_IFLNK:
      return "symlink";
    case constants.S_IFCHR:
      return "char";
    case constants.S_IFBLK:
      return "block";
    case constants.S_IFIFO:
      return "fifo";
    default:
      return undefined; // sockets: not archivable, and no image holds them
  }
}

// Plain (not bigint) stats: about half the cost per entry, which counts inside the freeze.
export function toStat(s: Stats): EntryStat | undefined {
  const kind = kindOf(s.mode);
  if (kind === undefined) return undefined;
  return {
    kind,
    dev: s.dev,
    ino: s.ino,
    perm: s.mode & 0o7777,
    uid: s.uid,
    gid: s.gid,
    size: s.size,
    blocks: s.blocks,
    nlink: s.nlink,
    rdev: s.rdev,
    mtimeMs: s.mtimeMs,
    ctimeMs: s.ctimeMs,
  };
}

/** Checks one entry's name and path against what an image may hold. */
export function checkEntry(rel: string, name: Buffer): void {
  const length = Buffer.byteLength(rel, "latin1") + 1;
  if (length > MAX_PATH_BYTES) {
    throw new HostileTreeError(
      `path ${displayPath(rel)} is ${length} bytes long, more than the ${MAX_PATH_BYTES} bytes (PATH_MAX) an image may hold: containerd could not unpack it; shorten or remove it before snapshotting`,
    );
  }
  if (name.length > 4 && name.subarray(0, 4).toString("latin1") === ".wh.") {
    throw new HostileTreeError(
      `file ${displayPath(rel)} is named like an OCI whiteout (".wh." prefix): in an image it would delete ${displayPath(rel.replace(/(^|\/)\.wh\.([^/]*)$/, "$1$2"))} when unpacked; rename or remove it before snapshotting`,
    );
  }
}

const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

interface Frame {
  readonly fd: number;
  /** `/proc/self/fd/<fd>/`: children are reached relative to the open directory. */
  readonly prefix: Buffer;
  /** `<root>/<rel>/`, for lstat by plain path (a frozen tree), when short enough to resolve. */
  readonly plain: Buffer | undefined;
  readonly rel: string;
  readonly names: Buffer[];
  i: number;
}

function frame(fd: number, rel: string, root: Buffer | undefined): Frame {
  const prefix = Buffer.from(`/proc/self/fd/${fd}/`);
  const names = readdirSync(prefix, { encoding: "buffer" }).sort((a, b) => Buffer.compare(a, b));
  const plain = root === undefined ? undefined : rel === "" ? root : Buffer.concat([root, Buffer.from(`${rel}/`, "latin1")]);
  return { fd, prefix, plain: plain !== undefined && plain.length < MAX_PATH_BYTES - 256 ? plain : undefined, rel, names, i: 0 };
}

export interface WalkOptions {
  readonly signal?: AbortSignal;
  readonly batch?: number;
  /**
   * The tree cannot change while it is walked (its containers are frozen): entries are lstat'ed by
   * their plain path, about half the cost of a path through /proc/self/fd. Directories are still
   * opened relative to their parent with O_NOFOLLOW.
   */
  readonly frozen?: boolean;
}

/**
 * Walks `root` in canonical order, yielding batches of entries (the root itself excluded). Between
 * batches the event loop runs (timers such as the freeze watchdog fire); `signal` stops the walk.
 * Synchronous file system calls within a batch: several times faster than the promise API per entry.
 */
export async function* walkTree(root: string, opts: WalkOptions = {}): AsyncGenerator<WalkEntry[]> {
  const batchSize = opts.batch ?? 512;
  const rootFd = openSync(root, constants.O_RDONLY | constants.O_DIRECTORY);
  const plainRoot = opts.frozen === true ? Buffer.from(`${root.replace(/\/+$/, "")}/`) : undefined;
  const stack: Frame[] = [frame(rootFd, "", plainRoot)];
  try {
    let batch: WalkEntry[] = [];
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as Frame;
      if (top.i >= top.names.length) {
        closeSync(top.fd);
        stack.pop();
        continue;
      }
      const name = top.names[top.i++] as Buffer;
      const rel = top.rel === "" ? name.toString("latin1") : `${top.rel}/${name.toString("latin1")}`;
      checkEntry(rel, name);
      const viaFd = (): Buffer => Buffer.concat([top.prefix, name]);
      const st = lstatSync(top.plain === undefined ? viaFd() : Buffer.concat([top.plain, name]), { throwIfNoEntry: false });
      const stat = st === undefined ? undefined : toStat(st);
      if (stat === undefined) continue; // vanished meanwhile, or a socket
      if (stat.kind !== "dir") {
        batch.push({ path: rel, stat });
      } else {
        let fd: number | undefined;
        try {
          fd = openSync(viaFd(), O_DIR);
        } catch {
          // swapped for a symlink or a file since the lstat, or gone: not followed, no children
        }
        if (fd === undefined) {
          batch.push({ path: rel, stat });
        } else {
          const opened = toStat(fstatSync(fd));
          if (opened === undefined || opened.kind !== "dir") {
            closeSync(fd);
            batch.push({ path: rel, stat });
          } else {
            // the stat of the directory actually read (it may differ from the lstat after a swap)
            batch.push({ path: rel, stat: opened });
            try {
              stack.push(frame(fd, rel, plainRoot));
            } catch (e) {
              closeSync(fd);
              throw e;
            }
          }
        }
      }
      if (batch.length >= batchSize) {
        yield batch;
        batch = [];
        await yieldToLoop();
        opts.signal?.throwIfAborted();
      }
    }
    if (batch.length > 0) yield batch;
  } finally {
    for (const f of stack) closeSync(f.fd);
  }
}
