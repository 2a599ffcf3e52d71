// GNU tar reading an upper directory into a raw archive on the scratch volume — nothing else: no
// conversion, and the archive goes from tar straight into the file (no copy through Node), which is
// all the capture does inside the freeze. Why GNU tar: see ./layer.ts.
//
// - `--sparse`: holes are found with SEEK_HOLE/SEEK_DATA and not stored, so a sparse file costs its
//   real blocks of reading and of scratch space, not its length.
// - a whole tree is read by tar's own traversal, which opens every directory relative to its parent
//   with O_NOFOLLOW: a directory swapped for a symlink while the sandbox runs is not followed.
// - a list of paths (`--no-recursion --files-from`) is only read while the containers are frozen, from
//   a walk made under the same freeze, so no component of those paths can change in between.
import { spawn } from "node:child_process";
import { closeSync, fstatSync, openSync } from "node:fs";
import { once } from "node:events";
import { ScratchFullError } from "./layer.js";

const COMMON = [
  "--create",
  "--file=-",
  "--format=posix",
  "--sparse",
  "--xattrs",
  "--xattrs-include=*",
  "--numeric-owner",
  "--warning=no-file-ignored", // sockets cannot be archived (and do not belong in an image)
];

export type TarSelection =
  /** The whole tree, sorted by name (the walk's canonical order). */
  | { readonly kind: "tree" }
  /** The whole tree, data only of entries changed at or after `sinceMs` (mtime or ctime; GNU `--newer`). */
  | { readonly kind: "newer"; readonly sinceMs: number }
  /** Exactly these paths, in the list's order (a file of NUL-terminated relative paths). */
  | { readonly kind: "list"; readonly listPath: string };

export function rawTarArgs(dir: string, sel: TarSelection): string[] {
  switch (sel.kind) {
    case "tree":
      return [...COMMON, "--sort=name", "--directory", dir, "."];
    case "newer":
      return [
        ...COMMON,
        "--sort=name",
        `--newer=@${(sel.sinceMs / 1000).toFixed(6)}`,
        "--warning=no-file-unchanged",
        "--directory",
        dir,
        ".",
      ];
    case "list":
      return [
        ...COMMON,
        "--no-recursion",
        "--null",
        "--verbatim-files-from", // a name such as "--checkpoint-action=exec=…" is a name, never an option
        "--no-unquote",
        "--directory", // before the list: names are taken relative to the -C in force where they appear
        dir,
        `--files-from=${sel.listPath}`,
      ];
  }
}

export interface RawTarOptions {
  readonly tarBinary?: string;
  /** Bytes the archive may take on the scratch volume: a number, or a function asked while it grows
   *  (archives written at the same time share the space). */
  readonly limitBytes: number | (() => number);
  /** Stops tar at once (the watchdog). */
  readonly signal?: AbortSignal;
  /**
   * Whether tar's "something changed or vanished while reading" exits (1, 2) are acceptable: while the
   * sandbox runs they are expected, and what changed is read again later; under the freeze they are not.
   */
  readonly tolerateChanges: boolean;
}

/** Runs GNU tar with its output into `outPath`; resolves to the archive's size. */
export async function rawTar(dir: string, sel: TarSelection, outPath: string, opts: RawTarOptions): Promise<number> {
  const out = openSync(outPath, "w", 0o600);
  try {
    const child = spawn(opts.tarBinary ?? "tar", rawTarArgs(dir, sel), {
      stdio: ["ignore", out, "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => {
      if (stderr.length < 4096) stderr += s;
    });
    // 'exit', not 'close': a grandchild (a wrapper's child) may hold tar's stderr open long after tar
    // is gone, and the watchdog must not wait for it
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", (code) => {
        resolve(code);
      });
    });
    const state = { over: false, limit: 0 };
    const size = (): number => fstatSync(out).size;
    const limit = (): number => (state.limit = typeof opts.limitBytes === "number" ? opts.limitBytes : opts.limitBytes());
    const stop = (): void => {
      child.kill("SIGKILL");
      child.stderr?.destroy();
    };
    // tar writes the file directly: its size is watched, and tar stopped when it outgrows the space
    const watch = setInterval(() => {
      if (size() > limit()) {
        state.over = true;
        stop();
      }
    }, 20);
    opts.signal?.addEventListener("abort", stop, { once: true });
    let code: number | null;
    try {
      code = await exited;
    } catch (e) {
      if (e instanceof Error && "code" in e && e.code === "ENOENT") {
        throw new Error("GNU tar is needed to read the upper directory and was not found on PATH (IMAGE_COMMITTER_TAR)");
      }
      throw e;
    } finally {
      clearInterval(watch);
      opts.signal?.removeEventListener("abort", stop);
    }
    opts.signal?.throwIfAborted();
    // the rest of tar's messages, briefly (see 'exit' above)
    if (child.stderr !== null && !child.stderr.destroyed) {
      await Promise.race([once(child.stderr, "close").catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]);
    }
    const n = size();
    if (state.over || n > limit()) throw new ScratchFullError(state.limit, "the copy of the upper directory");
    const ok = code === 0 || (opts.tolerateChanges && (code === 1 || code === 2));
    if (!ok) throw new Error(`tar of ${dir} failed (exit ${code ?? "signal"}): ${stderr.trim().slice(0, 1000)}`);
    return n;
  } finally {
    closeSync(out);
  }
}
