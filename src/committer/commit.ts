// The committer's two operations. commit: look up → check (runtime, base image, registry) → lease →
// capture (the only frozen part) → compress → assemble → push. unpause: resume a pod's paused
// containers. Containers are running again whenever these return or throw.
import { Readable } from "node:stream";
import { ContainerdError, type ContainerdClient, type LeasedClient } from "../containerd/client.js";
import { withLease } from "../containerd/lease.js";
import { RegistryClient } from "../registry/client.js";
import { isRegistryError } from "../registry/errors.js";
import type { RegistryLogger } from "../registry/log.js";
import { OCI_MANIFEST } from "../registry/media-types.js";
import { parseImageReference, type ImageReference } from "../registry/reference.js";
import type { RetryPolicy } from "../registry/retry.js";
import { capture, disposeLayer, layerBytes, type CaptureHooks, type CapturedLayer } from "./capture.js";
import { compressLayer, type CompressedBlob } from "./compress.js";
import type { CommitTarget, CommitterSettings } from "./config.js";
import { assembleImage, BaseImageError, loadBaseImage, type BaseImage } from "./image.js";
import { findTargets, pausedCompanions, podCompanions, podContainerAttempts, type TargetContainer } from "./lookup.js";
import { FreezeOwnership, NOT_A_COMMIT } from "./ownership.js";
import { Scratch } from "./scratch.js";

export interface Log {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface CommitDeps {
  readonly client: ContainerdClient;
  readonly log: Log;
  readonly hooks?: CaptureHooks & {
    /** Called after the resume, before the first registry write (tests observe the task status here). */
    readonly beforePush?: () => Promise<void> | void;
  };
  /** Registry retry policy (tests shorten it). */
  readonly retry?: Partial<RetryPolicy>;
  readonly now?: () => Date;
}

export interface CommittedContainer {
  readonly name: string;
  readonly image: string;
  readonly digest: string;
  readonly sizeBytes: number;
}

export interface CommitOutcome {
  readonly containers: CommittedContainer[];
  readonly freezeMillis: number;
  readonly capturedBytes: number;
}

export const CREATED_BY = "image-committer (sandbox-snapshot-controller)";
const LEASE_EXPIRY_MS = 6 * 60 * 60 * 1000;

function registryLogger(log: Log): RegistryLogger {
  const fmt = (obj: Record<string, unknown>, msg: string): string => `${msg} ${JSON.stringify(obj)}`;
  return {
    debug: () => undefined,
    info: (o, m) => {
      log.info(fmt(o, m));
    },
    warn: (o, m) => {
      log.warn(fmt(o, m));
    },
  };
}

/** One client per registry host; the insecure flag applies to the snapshot registries only. */
class Registries {
  private readonly clients = new Map<string, Promise<RegistryClient>>();
  constructor(
    private readonly s: CommitterSettings,
    private readonly snapshotHosts: ReadonlySet<string>,
    private readonly logger: RegistryLogger,
    private readonly retry: Partial<RetryPolicy> | undefined,
  ) {}
  get(host: string): Promise<RegistryClient> {
    let c = this.clients.get(host);
    if (c === undefined) {
      c = RegistryClient.create({
        registry: host,
        insecure: this.snapshotHosts.has(host) && this.s.registryInsecure,
        dockerConfigPath: this.s.dockerConfig,
        logger: this.logger,
        retry: this.retry,
      });
      this.clients.set(host, c);
    }
    return c;
  }
}

/** One container of the commit, carried through prepare → capture → compress → push. */
interface ContainerCommit {
  readonly target: CommitTarget;
  readonly container: TargetContainer;
  readonly base: BaseImage;
  readonly source: ImageReference | undefined;
  /** Base layers not in containerd's content store (discarded after unpacking): fetched from `source`. */
  readonly remoteLayers: ReadonlySet<string>;
}

function sourceReference(name: string): ImageReference | undefined {
  try {
    return parseImageReference(name);
  } catch {
    return undefined;
  }
}

async function prepare(
  deps: CommitDeps,
  registries: Registries,
  target: CommitTarget,
  container: TargetContainer,
): Promise<ContainerCommit> {
  const base = await loadBaseImage(deps.client, container.image);
  const source = sourceReference(base.name);
  const remoteLayers = new Set<string>();
  for (const l of base.manifest.layers) {
    try {
      await deps.client.contentInfo(l.digest);
    } catch (e) {
      if (!(e instanceof ContainerdError && e.notFound)) throw e;
      const reg = await registries.get(target.ref.registry);
      if (await reg.statBlob(target.ref.repository, l.digest)) continue; // already at the destination
      if (source === undefined) {
        throw new BaseImageError(`base layer ${l.digest} of ${base.name} is not in containerd's content store, and the image name is not a registry reference to copy it from`);
      }
      try {
        const src = await registries.get(source.registry);
        if ((await src.statBlob(source.repository, l.digest)) === undefined) throw new Error("not found there");
      } catch (err) {
        throw new BaseImageError(
          `base layer ${l.digest} of ${base.name} is not in containerd's content store and cannot be copied from ${source.registry}/${source.repository}: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      remoteLayers.add(l.digest);
    }
  }
  return { target, container, base, source, remoteLayers };
}

/** Makes the layer from its capture while compressing it onto the scratch volume. */
async function compress(
  client: LeasedClient,
  layer: CapturedLayer<ContainerCommit>,
  s: CommitterSettings,
  scratch: Scratch,
): Promise<{ blob: CompressedBlob; diffId: string }> {
  const out = scratch.file(`${layer.item.target.container}.${s.compression === "zstd" ? "tar.zst" : "tar.gz"}`);
  const bytes = layerBytes(client, layer);
  const blob = await compressLayer(bytes.chunks, out, s.compression, scratch.available());
  return { blob, diffId: bytes.result().diffId };
}

async function push(
  deps: CommitDeps,
  client: LeasedClient,
  registries: Registries,
  p: ContainerCommit,
  blob: CompressedBlob,
  diffId: string,
  s: CommitterSettings,
): Promise<CommittedContainer> {
  const { ref } = p.target;
  const reg = await registries.get(ref.registry);
  const assembled = assembleImage(
    p.base,
    { digest: blob.digest, size: blob.size, mediaType: blob.mediaType, diffId },
    { uid: s.snapshotUid, name: s.snapshotName, namespace: s.snapshotNamespace },
    (deps.now ?? (() => new Date()))(),
    CREATED_BY,
  );
  const mountFrom = p.source !== undefined && p.source.registry === ref.registry ? [p.source.repository] : [];
  for (const l of assembled.baseLayers) {
    const digest = l.digest;
    const remote = p.remoteLayers.has(digest) && p.source !== undefined ? p.source : undefined;
    const open = async (): Promise<Readable> => {
      if (remote !== undefined) return (await registries.get(remote.registry)).openBlob(remote.repository, digest);
      return Readable.from(client.readContent(digest));
    };
    const r = await reg.pushBlob(ref.repository, { open }, { digest, mountFrom });
    deps.log.info(`${p.target.container}: base layer ${digest} ${r.outcome}`);
  }
  const layer = await reg.pushBlob(ref.repository, { path: blob.path }, { digest: blob.digest });
  deps.log.info(`${p.target.container}: snapshot layer ${blob.digest} (${blob.size} bytes) ${layer.outcome}`);
  await reg.pushBlob(ref.repository, { bytes: assembled.config }, { digest: assembled.configDigest });
  const m = await reg.putManifest(ref.repository, ref.tag ?? "latest", assembled.manifest, { mediaType: OCI_MANIFEST });
  deps.log.info(`${p.target.container}: pushed ${p.target.image}@${m.digest}`);
  return { name: p.target.container, image: p.target.image, digest: m.digest, sizeBytes: blob.size };
}

export async function commit(
  pod: string,
  namespace: string,
  targets: readonly CommitTarget[],
  s: CommitterSettings,
  deps: CommitDeps,
): Promise<CommitOutcome> {
  const { client, log } = deps;
  const snapshotHosts = new Set(targets.map((t) => t.ref.registry));
  const registries = new Registries(s, snapshotHosts, registryLogger(log), deps.retry);

  // ---- checks before anything is frozen --------------------------------------------------------
  const containers = await findTargets(
    client,
    pod,
    namespace,
    targets.map((t) => t.container),
    s.podUid,
  );
  // independent look-ups, side by side: the fixed cost of a small commit is mostly their round trips
  const [companions] = await Promise.all([
    podCompanions(client, pod, namespace, containers),
    Promise.all([...snapshotHosts].map(async (host) => (await registries.get(host)).ping())),
  ]);
  const prepared = await Promise.all(targets.map((t, i) => prepare(deps, registries, t, containers[i] as TargetContainer)));

  const leaseOptions = {
    prefix: "image-committer",
    ttlMs: LEASE_EXPIRY_MS,
    onDeleteError: (m: string) => {
      log.warn(m);
    },
  };
  return withLease(client, leaseOptions, async (leased) => {
    const scratch = new Scratch(s.scratchDir, s.scratchLimitBytes);
    let layers: CapturedLayer<ContainerCommit>[] = [];
    try {
      // ---- pre-copy, then the freeze -------------------------------------------------------------
      const captured = await capture(
        leased,
        prepared,
        {
          maxFreezeSeconds: s.maxFreezeSeconds,
          containerdRoot: s.containerdRoot,
          tarCommand: s.tarCommand,
          maxPrecopyPasses: s.precopyPasses,
          freezeOwner: s.snapshotUid,
          alsoFreeze: companions,
        },
        scratch,
        (m) => {
          log.info(m);
        },
        deps.hooks ?? {},
      );
      layers = captured.layers;
      log.info(
        `captured ${layers.length} container(s), ${captured.frozenBytes} bytes read while frozen; frozen for ${captured.freezeMillis} ms`,
      );

      // ---- after the resume: make the layer while compressing, assemble, push ---------------------
      await deps.hooks?.beforePush?.();
      // each layer is pushed as soon as it is compressed, while the next is compressed and the earlier
      // ones are still pushing: a push only reads its own blob, and a small layer's push is mostly round
      // trips, which the pushes of several containers now wait out together
      const pushes: Promise<CommittedContainer>[] = [];
      let pushFailed = false;
      const failed = (): boolean => pushFailed; // a call: read afresh after each await
      try {
        for (const layer of layers) {
          if (failed()) break;
          const { blob, diffId } = await compress(leased, layer, s, scratch);
          disposeLayer(layer);
          // the commit has failed while this layer was compressed: pushing it would only leave an image behind
          if (failed()) break;
          const pushed = push(deps, leased, registries, layer.item, blob, diffId, s).then((r) => {
            scratch.remove(blob.path);
            return r;
          });
          pushed.catch(() => {
            pushFailed = true; // awaited below; this only stops compressing the next layers
          });
          pushes.push(pushed);
        }
      } finally {
        // never clean the scratch under a push in flight, whatever failed
        await Promise.allSettled(pushes);
      }
      const results: CommittedContainer[] = [];
      for (const p of pushes) results.push(await p); // the first failure, in the containers' order
      return { containers: results, freezeMillis: captured.freezeMillis, capturedBytes: captured.frozenBytes };
    } finally {
      for (const l of layers) disposeLayer(l);
      scratch.removeAll();
    }
  });
}

export interface UnpauseOutcome {
  readonly resumed: string[];
  readonly running: string[];
  readonly missing: string[];
  /** Paused, but not by a commit of this snapshot: left paused, with the reason. */
  readonly notOurs: string[];
}

/** Resumes a container its freeze record shows this snapshot froze, then deletes the record (its purpose served). */
async function resumeFrozen(client: ContainerdClient, id: string, recordId: string): Promise<void> {
  try {
    await client.resume(id);
  } catch (e) {
    if ((await client.taskStatus(id)) === "PAUSED") throw e;
  }
  await client.deleteLease(recordId).catch(() => undefined);
}

/**
 * Resumes the named containers of a pod that a commit of this snapshot (`owner`, the SNAPSHOT_UID;
 * "" for commits run without one) froze, as its freeze records say — including a commit that was
 * killed mid-freeze — and the pod's other containers that commit paused with them. Containers paused by anyone else are left paused and reported. Missing or
 * stopped containers are reported, not errors.
 */
export async function unpause(
  client: ContainerdClient,
  pod: string,
  namespace: string,
  names: readonly string[],
  owner = "",
): Promise<UnpauseOutcome> {
  const out: UnpauseOutcome = { resumed: [], running: [], missing: [], notOurs: [] };
  const records = new FreezeOwnership(client, owner, { lifetimeMs: 0, waitMs: 0 });
  for (const name of names) {
    const attempts = await podContainerAttempts(client, pod, namespace, name);
    const paused = attempts.filter((a) => a.status === "PAUSED" || a.status === "PAUSING");
    if (paused.length === 0) {
      (attempts.some((a) => a.status === "RUNNING") ? out.running : out.missing).push(name);
      continue;
    }
    let resumed = false;
    for (const a of paused) {
      const rec = await records.read(a.container.id);
      if (rec?.owner !== owner) {
        const reason = rec === undefined ? NOT_A_COMMIT.replace("<id>", a.container.id) : `frozen by ${rec.owner === "" ? "a commit run without SNAPSHOT_UID" : `the commit of snapshot ${rec.owner}`}, not this one`;
        out.notOurs.push(`${name} (${a.container.id}): ${reason}`);
        continue;
      }
      await resumeFrozen(client, a.container.id, rec.id);
      resumed = true;
    }
    if (resumed) out.resumed.push(name);
  }
  // the pod's other containers a commit of this snapshot paused with the captured ones (podCompanions)
  for (const c of await pausedCompanions(client, pod, namespace, names)) {
    const rec = await records.read(c.id);
    if (rec === undefined || rec.owner !== owner) continue; // not frozen by this snapshot: not ours to resume
    await resumeFrozen(client, c.id, rec.id);
    out.resumed.push(c.name);
  }
  return out;
}

/** A one-line description of an error for the result file and the log. */
export function describeError(e: unknown): string {
  if (isRegistryError(e)) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
