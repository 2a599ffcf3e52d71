// Capture with the shortest freeze: everything that can be prepared is prepared before the pause
// (lookup, mounts, the Diff service's parent view, the scratch-space check); while frozen only the
// changes are read; compression and push happen after the resume.
import { lstat, opendir, readFile, rm, statfs, access, constants } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { ContainerdClient } from "../containerd/client.js";
import type { Mount } from "../containerd/types.js";
import { Freezer, type FreezeLog } from "./freeze.js";
import { captureUpperdir, NeedsDiffService, ScratchFullError, TRUSTED_OVERLAY, USER_OVERLAY } from "./layer.js";
import type { TargetContainer } from "./lookup.js";

export const MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";

export interface CaptureSettings {
  readonly scratchDir: string;
  readonly scratchLimitBytes: number;
  readonly maxFreezeSeconds: number;
  /** containerd's root on this host; upper directories must be readable under it. */
  readonly containerdRoot: string;
  /** Where overlayfs module parameters are read (tests point it elsewhere). */
  readonly overlayParamsDir?: string;
  /** GNU tar (default `tar` on PATH). */
  readonly tarCommand?: string;
  /** The snapshot UID recorded as the owner of the freeze (./ownership.ts). */
  readonly freezeOwner?: string | undefined;
}

/** A captured, uncompressed layer: on the scratch volume, or in containerd's content store. */
export type LayerLocation = { readonly kind: "file"; readonly path: string } | { readonly kind: "content"; readonly digest: string };

export interface CapturedLayer {
  readonly target: TargetContainer;
  readonly method: "upperdir" | "diff-service";
  readonly diffId: string;
  readonly size: number;
  readonly location: LayerLocation;
}

export interface CaptureResult {
  readonly layers: CapturedLayer[];
  readonly freezeMillis: number;
  readonly capturedBytes: number;
}

export interface CaptureHooks {
  /** Called while frozen, after the pause and before reading (tests observe the freeze here). */
  readonly onFrozen?: () => Promise<void> | void;
}

type Plan =
  | { readonly kind: "upperdir"; readonly upperdir: string; readonly overlayPrefix: string; readonly right: Mount[]; readonly parent: string }
  | { readonly kind: "diff"; readonly right: Mount[]; readonly parent: string; readonly reason: string };

function option(m: Mount, name: string): string | undefined {
  const o = m.options.find((x) => x === name || x.startsWith(`${name}=`));
  if (o === undefined) return undefined;
  return o.includes("=") ? o.slice(name.length + 1) : "";
}

async function moduleParam(dir: string, name: string): Promise<boolean> {
  try {
    return (await readFile(join(dir, name), "utf8")).trim().startsWith("Y");
  } catch {
    return false;
  }
}

/**
 * Decides how to read a container's changes: directly from the overlay upper directory when that is
 * exact, through containerd's Diff service otherwise (other snapshotters, redirect_dir, metacopy,
 * an upper directory that is not readable here).
 */
export async function planCapture(client: ContainerdClient, t: TargetContainer, s: CaptureSettings): Promise<Plan> {
  const right = await client.snapshotMounts(t.snapshotter, t.snapshotKey);
  const info = await client.statSnapshot(t.snapshotter, t.snapshotKey);
  const parent = info.parent;
  const diff = (reason: string): Plan => ({ kind: "diff", right, parent, reason });
  const m = right[0];
  if (right.length !== 1 || m === undefined || m.type !== "overlay") {
    return diff(`snapshotter ${t.snapshotter} mount is ${right.map((x) => x.type).join("+") || "empty"}, not a single overlay`);
  }
  const upperdir = option(m, "upperdir");
  if (upperdir === undefined || upperdir === "") return diff("overlay mount has no upperdir");
  const params = s.overlayParamsDir ?? "/sys/module/overlay/parameters";
  for (const feature of ["redirect_dir", "metacopy"]) {
    const v = option(m, feature);
    if (v !== undefined ? v !== "off" && v !== "nofollow" : await moduleParam(params, feature)) {
      return diff(`overlay ${feature} is on: the upper directory alone does not hold the changes`);
    }
  }
  try {
    await access(upperdir, constants.R_OK);
  } catch {
    return diff(`upper directory ${upperdir} is not readable here (is CONTAINERD_ROOT=${s.containerdRoot} mounted at the same path?)`);
  }
  const overlayPrefix = option(m, "userxattr") !== undefined ? USER_OVERLAY : TRUSTED_OVERLAY;
  return { kind: "upperdir", upperdir, overlayPrefix, right, parent };
}

/** A size estimate of the tar of a directory (headers, PAX records, padded data). */
export async function estimateTarBytes(dir: string): Promise<number> {
  let total = 1024;
  const walk = async (d: string): Promise<void> => {
    const handle = await opendir(d);
    for await (const ent of handle) {
      const p = join(d, ent.name);
      total += 1536;
      if (ent.isFile()) total += Math.ceil((await lstat(p)).size / 512) * 512;
      else if (ent.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return total;
}

async function usedBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    for await (const ent of await opendir(d)) {
      const p = join(d, ent.name);
      if (ent.isDirectory()) await walk(p);
      else total += (await lstat(p)).size;
    }
  };
  await walk(dir);
  return total;
}

/** Bytes the scratch directory can still take: its configured limit less what is used, and the disk's free space. */
export async function scratchAvailable(dir: string, limitBytes: number): Promise<number> {
  const fsInfo = await statfs(dir);
  const free = fsInfo.bavail * fsInfo.bsize;
  return Math.max(0, Math.min(limitBytes - (await usedBytes(dir)), free));
}

export async function capture(
  client: ContainerdClient,
  targets: readonly TargetContainer[],
  s: CaptureSettings,
  lease: string,
  log: FreezeLog,
  hooks: CaptureHooks = {},
): Promise<CaptureResult> {
  // ---- before the freeze -----------------------------------------------------------------------
  const plans = await Promise.all(targets.map((t) => planCapture(client, t, s)));
  let estimate = 0;
  for (const [i, p] of plans.entries()) {
    if (p.kind === "upperdir") estimate += await estimateTarBytes(p.upperdir);
    else log(`container ${targets[i]?.name ?? "?"}: using containerd's Diff service (${p.reason})`);
  }
  const available = await scratchAvailable(s.scratchDir, s.scratchLimitBytes);
  if (estimate > available) {
    throw new ScratchFullError(available, `the containers' changes (about ${estimate} bytes)`);
  }
  const tag = randomBytes(4).toString("hex");
  const views = new Map<number, { key: string; mounts: Mount[] }>();
  const ensureView = async (i: number): Promise<Mount[]> => {
    const have = views.get(i);
    if (have !== undefined) return have.mounts;
    const t = targets[i] as TargetContainer;
    const key = `${lease}-parent-${i}-${tag}`;
    const mounts = t.snapshotter && plans[i]?.parent ? await client.viewSnapshot(t.snapshotter, key, plans[i].parent, lease) : [];
    views.set(i, { key, mounts });
    return mounts;
  };
  for (const [i, p] of plans.entries()) if (p.kind === "diff") await ensureView(i);

  // ---- frozen ----------------------------------------------------------------------------------
  const freezer = new Freezer(
    client,
    targets.map((t) => t.id),
    s.maxFreezeSeconds * 1000,
    log,
    { owner: s.freezeOwner, names: new Map(targets.map((t) => [t.id, t.name])) },
  );
  const written: string[] = [];
  const layers: CapturedLayer[] = [];
  try {
    await freezer.freeze();
    await hooks.onFrozen?.();
    let budget = available;
    const viaDiff = async (i: number, t: TargetContainer, p: Plan): Promise<CapturedLayer> => {
      const left = await ensureView(i);
      const remaining = Math.max(1000, s.maxFreezeSeconds * 1000 - freezer.freezeMillis);
      const desc = await client.diff(left, p.right, MEDIA_TYPE_LAYER_TAR, `${lease}-diff-${i}-${tag}`, lease, remaining);
      const info = await client.contentInfo(desc.digest);
      const uncompressed = info.labels["containerd.io/uncompressed"] ?? desc.digest;
      return { target: t, method: "diff-service", diffId: uncompressed, size: desc.size, location: { kind: "content", digest: desc.digest } };
    };
    // Sequential on purpose: the budget check is exact, and on two cores parallel tar readers of the
    // same disk gain little while doubling the memory held.
    for (const [i, p] of plans.entries()) {
      const t = targets[i] as TargetContainer;
      if (p.kind === "diff") {
        layers.push(await viaDiff(i, t, p));
        continue;
      }
      const path = join(s.scratchDir, `${t.name}-${tag}.tar`);
      written.push(path);
      try {
        const r = await captureUpperdir(p.upperdir, path, { limitBytes: budget, overlayPrefix: p.overlayPrefix, signal: freezer.signal, tarBinary: s.tarCommand });
        budget -= r.size;
        layers.push({ target: t, method: "upperdir", diffId: r.diffId, size: r.size, location: { kind: "file", path } });
      } catch (e) {
        if (!(e instanceof NeedsDiffService)) throw e;
        log(`container ${t.name}: ${e.message}; using containerd's Diff service`);
        await rm(path, { force: true });
        layers.push(await viaDiff(i, t, p));
      }
      freezer.signal.throwIfAborted();
    }
  } catch (e) {
    await freezer.thaw().catch((te: unknown) => {
      log(`resume after failure: ${te instanceof Error ? te.message : String(te)}`);
    });
    await Promise.all(written.map((w) => rm(w, { force: true })));
    await removeViews(client, targets, views);
    throw freezer.signal.aborted ? (freezer.signal.reason as Error) : e;
  }
  await freezer.thaw();
  await removeViews(client, targets, views);
  return { layers, freezeMillis: freezer.freezeMillis, capturedBytes: layers.reduce((n, l) => n + l.size, 0) };
}

async function removeViews(
  client: ContainerdClient,
  targets: readonly TargetContainer[],
  views: Map<number, { key: string; mounts: Mount[] }>,
): Promise<void> {
  for (const [i, v] of views) {
    const t = targets[i];
    if (t !== undefined) await client.removeSnapshot(t.snapshotter, v.key).catch(() => undefined);
  }
}
