// Capture with the shortest freeze. Before the pause: plans (overlay upper directory, or containerd's
// Diff service), the Diff service's parent views, and the pre-copy of every upper directory while the
// sandbox runs (./upper.ts) — hostile trees are refused here, before anything is frozen. Frozen: a stat
// walk of each upper directory and a raw read of what changed since its pre-copy (or the Diff service).
// After the resume: the OCI layers are made from the raw captures while they are compressed.
import { readFile, access, constants } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { ContainerdClient, LeasedClient } from "../containerd/client.js";
import type { Mount } from "../containerd/types.js";
import { Freezer, type FreezeLog } from "./freeze.js";
import { NeedsDiffService, TRUSTED_OVERLAY, USER_OVERLAY, type LayerBytes } from "./layer.js";
import type { PodContainer, TargetContainer } from "./lookup.js";
import type { Scratch } from "./scratch.js";
import { UpperCapture, type FrozenStats, type PassStats, type UpperOptions } from "./upper.js";

export const MEDIA_TYPE_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar";

export interface CaptureSettings {
  readonly maxFreezeSeconds: number;
  /** containerd's root on this host; upper directories must be readable under it. */
  readonly containerdRoot: string;
  /** Where overlayfs module parameters are read (tests point it elsewhere). */
  readonly overlayParamsDir?: string;
  /** GNU tar (default `tar` on PATH). */
  readonly tarCommand?: string;
  /** The snapshot UID recorded as the owner of the freeze (./ownership.ts). */
  readonly freezeOwner?: string | undefined;
  /** Pre-copy passes at most (default 3; 0 reads everything under the freeze). */
  readonly maxPrecopyPasses?: number;
  /** Wall clock in ms, compared with ctimes (tests pass their own). */
  readonly now?: () => number;
  /** TEST ONLY (see UpperOptions): the racy-git rule off. */
  readonly unsafeTrustRacyEntries?: boolean;
  /** The pod's other running containers: paused with the captured ones, not captured (lookup.ts podCompanions). */
  readonly alsoFreeze?: readonly PodContainer[];
}

/** What a captured layer is made from: a raw capture of an upper directory, or the Diff service's layer. */
export type LayerSource =
  | { readonly kind: "upper"; readonly upper: UpperCapture; readonly overlayPrefix: string }
  | { readonly kind: "content"; readonly digest: string; readonly diffId: string; readonly size: number };

/** A container of the commit, carried through the capture. */
export interface CaptureItem {
  readonly container: TargetContainer;
}

export interface CapturedLayer<T extends CaptureItem = CaptureItem> {
  readonly item: T;
  readonly method: "upperdir" | "diff-service";
  readonly source: LayerSource;
  /** Pre-copy passes (upper directories). */
  readonly passes: readonly PassStats[];
  /** What the freeze walked and read again (upper directories). */
  readonly frozen?: FrozenStats;
}

export interface CaptureResult<T extends CaptureItem = CaptureItem> {
  readonly layers: CapturedLayer<T>[];
  readonly freezeMillis: number;
  /** Bytes of file data read inside the freeze (upper directories), or the Diff service's layer sizes. */
  readonly frozenBytes: number;
}

export interface CaptureHooks {
  /** Called while frozen, after the pause and before reading (tests observe the freeze here). */
  readonly onFrozen?: () => Promise<void> | void;
  /** Called after each pre-copy pass of each upper directory (tests change the tree while it "runs"). */
  readonly onPrecopyPass?: (container: string, pass: number) => Promise<void> | void;
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

/**
 * The layer's uncompressed tar as a stream, and its diff_id once read. Upper directories: made now, from
 * the raw capture (conversion to OCI form here, after the thaw).
 */
export function layerBytes(client: LeasedClient, layer: CapturedLayer): LayerBytes {
  const src = layer.source;
  if (src.kind === "upper") return src.upper.layer(src.overlayPrefix);
  const chunks = (async function* (): AsyncGenerator<Buffer> {
    yield* client.readContent(src.digest);
  })();
  return { chunks, result: () => ({ diffId: src.diffId, size: src.size, entries: 0 }) };
}

/** Removes what a layer's capture left on the scratch volume. */
export function disposeLayer(layer: CapturedLayer): void {
  if (layer.source.kind === "upper") layer.source.upper.dispose();
}

export async function capture<T extends CaptureItem>(
  client: LeasedClient,
  items: readonly T[],
  s: CaptureSettings,
  scratch: Scratch,
  log: FreezeLog,
  hooks: CaptureHooks = {},
): Promise<CaptureResult<T>> {
  // ---- before the freeze -----------------------------------------------------------------------
  interface Job {
    readonly item: T;
    plan: Plan;
    upper?: UpperCapture;
    view?: { key: string; mounts: Mount[] };
  }
  const jobs: Job[] = await Promise.all(items.map(async (item) => ({ item, plan: await planCapture(client, item.container, s) })));
  const tag = randomBytes(4).toString("hex");
  const removeViews = async (): Promise<void> => {
    for (const j of jobs) if (j.view !== undefined) await client.removeSnapshot(j.item.container.snapshotter, j.view.key).catch(() => undefined);
  };
  const disposeUppers = (): void => {
    for (const j of jobs) j.upper?.dispose();
  };
  const toDiff = async (j: Job, reason: string): Promise<void> => {
    log(`container ${j.item.container.name}: using containerd's Diff service (${reason})`);
    const t = j.item.container;
    j.plan = { kind: "diff", right: j.plan.right, parent: j.plan.parent, reason };
    const key = `${client.lease}-parent-${t.name}-${tag}`;
    const mounts = t.snapshotter && j.plan.parent ? await client.viewSnapshot(t.snapshotter, key, j.plan.parent) : [];
    j.view = { key, mounts };
  };
  const precopy = async (j: Job, signal: AbortSignal): Promise<void> => {
    const p = j.plan;
    if (p.kind === "diff") {
      await toDiff(j, p.reason);
      return;
    }
    const opts: UpperOptions = {
      tarBinary: s.tarCommand,
      overlayPrefix: p.overlayPrefix,
      now: s.now,
      maxPasses: s.maxPrecopyPasses,
      unsafeTrustRacyEntries: s.unsafeTrustRacyEntries,
      onPass: hooks.onPrecopyPass ? (n) => hooks.onPrecopyPass?.(j.item.container.name, n) : undefined,
    };
    const upper = new UpperCapture(p.upperdir, scratch, `${j.item.container.name}-${tag}`, opts);
    j.upper = upper;
    try {
      await upper.precopy(signal);
    } catch (e) {
      if (!(e instanceof NeedsDiffService)) throw e;
      upper.dispose();
      j.upper = undefined;
      await toDiff(j, e.message);
      return;
    }
    const last = upper.passes[upper.passes.length - 1];
    log(
      `container ${j.item.container.name}: pre-copied ${upper.precopiedBytes} bytes in ${upper.passes.length} pass(es) (${upper.passes.map((x) => `${x.millis} ms`).join(", ")}); ${last?.changed ?? 0} of ${last?.entries ?? 0} entries left for the freeze`,
    );
  };
  // All containers at once (their tars run side by side; the scratch limit is shared, see rawTar's
  // limitBytes); the first failure stops the others.
  const stop = new AbortController();
  const settled = await Promise.allSettled(
    jobs.map(async (j) => {
      try {
        await precopy(j, stop.signal);
      } catch (e) {
        stop.abort(e);
        throw e;
      }
    }),
  );
  if (settled.some((r) => r.status === "rejected")) {
    disposeUppers();
    await removeViews();
    throw stop.signal.reason instanceof Error ? stop.signal.reason : new Error(String(stop.signal.reason));
  }

  // ---- frozen ----------------------------------------------------------------------------------
  const companions = s.alsoFreeze ?? [];
  if (companions.length > 0) log(`also pausing the pod's other running container(s), not captured: ${companions.map((c) => c.name).join(", ")}`);
  const freezer = new Freezer(
    client,
    [...items.map((i) => i.container.id), ...companions.map((c) => c.id)],
    s.maxFreezeSeconds * 1000,
    log,
    { owner: s.freezeOwner, names: new Map([...items.map((i) => [i.container.id, i.container.name] as const), ...companions.map((c) => [c.id, c.name] as const)]) },
  );
  const layers: CapturedLayer<T>[] = [];
  try {
    await freezer.freeze();
    await hooks.onFrozen?.();
    // Sequential on purpose: on two cores parallel readers of the same disk gain little.
    for (const [i, j] of jobs.entries()) {
      if (j.upper !== undefined && j.plan.kind === "upperdir") {
        const frozen = await j.upper.frozen(freezer.signal);
        layers.push({ item: j.item, method: "upperdir", source: { kind: "upper", upper: j.upper, overlayPrefix: j.plan.overlayPrefix }, passes: j.upper.passes, frozen });
      } else {
        const remaining = Math.max(1000, s.maxFreezeSeconds * 1000 - freezer.freezeMillis);
        const desc = await client.diff(j.view?.mounts ?? [], j.plan.right, MEDIA_TYPE_LAYER_TAR, `${client.lease}-diff-${i}-${tag}`, remaining);
        const info = await client.contentInfo(desc.digest);
        const diffId = info.labels["containerd.io/uncompressed"] ?? desc.digest;
        layers.push({ item: j.item, method: "diff-service", source: { kind: "content", digest: desc.digest, diffId, size: desc.size }, passes: [] });
      }
      freezer.signal.throwIfAborted();
    }
  } catch (e) {
    await freezer.thaw().catch((te: unknown) => {
      log(`resume after failure: ${te instanceof Error ? te.message : String(te)}`);
    });
    disposeUppers();
    await removeViews();
    throw freezer.signal.aborted ? (freezer.signal.reason as Error) : e;
  }
  try {
    await freezer.thaw();
  } catch (e) {
    disposeUppers();
    throw e;
  } finally {
    await removeViews();
  }
  const frozenBytes = layers.reduce((n, l) => n + (l.frozen?.rereadBytes ?? (l.source.kind === "content" ? l.source.size : 0)), 0);
  return { layers, freezeMillis: freezer.freezeMillis, frozenBytes };
}
