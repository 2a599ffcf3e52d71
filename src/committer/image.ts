// Image assembly: the container's base image (manifest, config, layers) from containerd's content
// store, the captured layer appended, the config's rootfs.diff_ids and history extended, and the
// snapshot's identity in the manifest annotations (so two snapshots never share a digest).
import { createHash } from "node:crypto";
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdError } from "../containerd/client.js";
import type { Descriptor as ContainerdDescriptor } from "../containerd/types.js";
import type { Descriptor, ImageIndex, ImageManifest } from "../registry/media-types.js";
import { currentPlatform, format, only, pickIndexEntry, type Platform } from "./platform.js";
import {
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_LAYER_TAR,
  OCI_MANIFEST,
} from "../registry/media-types.js";
import { ANNOTATION_SNAPSHOT_NAME, ANNOTATION_SNAPSHOT_NAMESPACE, ANNOTATION_SNAPSHOT_UID } from "../contract/commit-job.js";

// The annotation keys live in the commit Job contract; re-exported for the committer's callers.
export { ANNOTATION_SNAPSHOT_NAME, ANNOTATION_SNAPSHOT_NAMESPACE, ANNOTATION_SNAPSHOT_UID };
export const ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name";
export const ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest";

/** Docker schema 2 layer media types and their OCI equivalents (same bytes, same digests). */
const TO_OCI: Readonly<Record<string, string>> = {
  [DOCKER_LAYER_GZIP]: OCI_LAYER_GZIP,
  "application/vnd.docker.image.rootfs.diff.tar": OCI_LAYER_TAR,
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
};

export interface ImageConfig {
  rootfs?: { type?: string; diff_ids?: string[] };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
  created?: string;
  [k: string]: unknown;
}

export interface BaseImage {
  /** containerd's image name, e.g. `docker.io/library/python:3.12`. */
  readonly name: string;
  readonly manifestDigest: string;
  readonly manifest: ImageManifest;
  readonly config: ImageConfig;
}

export class BaseImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BaseImageError";
  }
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new BaseImageError(`${what} in containerd's content store is not valid JSON`);
  }
}

async function readBlob(client: ContainerdClient, d: { digest: string }, what: string): Promise<Buffer> {
  try {
    return await client.readContentAll(d.digest);
  } catch (e) {
    if (e instanceof ContainerdError && e.notFound) {
      throw new BaseImageError(`${what} ${d.digest} is missing from containerd's content store`);
    }
    throw e;
  }
}

/**
 * Reads the base image of a container from containerd: the manifest containerd runs on this node's
 * platform (chosen as containerd chooses it, ./platform.ts), and its config.
 */
export async function loadBaseImage(client: ContainerdClient, name: string, platform: Platform = currentPlatform()): Promise<BaseImage> {
  if (name === "") throw new BaseImageError("the container has no image name in containerd");
  let target: ContainerdDescriptor;
  try {
    target = (await client.getImage(name)).target;
  } catch (e) {
    if (e instanceof ContainerdError && e.notFound) {
      throw new BaseImageError(`base image ${name} is not in containerd's image store (namespace ${client.namespace})`);
    }
    throw e;
  }
  const matcher = only(platform);
  let manifestDesc: { digest: string; media_type: string } = target;
  /** Set when the manifest was picked from an index entry without a platform: its config decides. */
  let unplatformed = false;
  for (let depth = 0; depth < 3 && (manifestDesc.media_type === OCI_INDEX || manifestDesc.media_type === DOCKER_MANIFEST_LIST); depth++) {
    const index = parseJson(await readBlob(client, manifestDesc, `index of ${name}`), `index of ${name}`) as ImageIndex;
    const entries = Array.isArray(index.manifests) ? index.manifests : [];
    const match = pickIndexEntry(entries, matcher);
    if (match === undefined) {
      const listed = entries.map((m) => (m.platform ? format(m.platform) : "no platform")).join(", ");
      throw new BaseImageError(`base image ${name} has no manifest for ${matcher.describe} (its index lists: ${listed || "nothing"})`);
    }
    manifestDesc = { digest: match.digest, media_type: match.mediaType };
    // JSON null counts as absent, as in containerd
    unplatformed = !match.platform;
  }
  const manifest = parseJson(await readBlob(client, manifestDesc, `manifest of ${name}`), `manifest of ${name}`) as ImageManifest;
  if (!Array.isArray(manifest.layers) || typeof manifest.config !== "object") {
    throw new BaseImageError(`manifest ${manifestDesc.digest} of ${name} is not an image manifest`);
  }
  const config = parseJson(await readBlob(client, manifest.config, `config of ${name}`), `config of ${name}`) as ImageConfig;
  if (unplatformed) {
    // containerd checks an entry without a platform against its config's os/architecture (no variant)
    const os = typeof config.os === "string" ? config.os : "";
    const architecture = typeof config.architecture === "string" ? config.architecture : "";
    if (!matcher.match({ os, architecture })) {
      throw new BaseImageError(
        `base image ${name} has no manifest for ${matcher.describe}: the index entry containerd would use (${manifestDesc.digest}, no platform) has a config for ${format({ os, architecture })}`,
      );
    }
  }
  return { name, manifestDigest: manifestDesc.digest, manifest, config };
}

export interface NewLayer {
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
  readonly diffId: string;
}

export interface SnapshotIdentity {
  readonly uid?: string | undefined;
  readonly name?: string | undefined;
  readonly namespace?: string | undefined;
}

export interface AssembledImage {
  readonly config: Buffer;
  readonly configDigest: string;
  readonly manifest: Buffer;
  readonly manifestDigest: string;
  /** The base image's layers, as they appear in the new manifest. */
  readonly baseLayers: Descriptor[];
}

function sha256(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

/**
 * The new image: an OCI manifest (Docker media types of the base are mapped to their OCI twins, the
 * bytes and digests are unchanged), the base config with one more diff_id and history entry.
 * Pure: `created` is passed in.
 */
export function assembleImage(
  base: BaseImage,
  layer: NewLayer,
  snapshot: SnapshotIdentity,
  created: Date,
  createdBy: string,
): AssembledImage {
  const cfg: ImageConfig = structuredClone(base.config);
  const diffIds = [...(cfg.rootfs?.diff_ids ?? [])];
  if (diffIds.length !== base.manifest.layers.length) {
    throw new BaseImageError(
      `base image ${base.name}: config lists ${diffIds.length} layers but the manifest has ${base.manifest.layers.length}`,
    );
  }
  cfg.rootfs = { type: "layers", diff_ids: [...diffIds, layer.diffId] };
  cfg.created = created.toISOString();
  const comment = snapshot.name !== undefined ? `snapshot ${snapshot.namespace ?? ""}/${snapshot.name}` : undefined;
  cfg.history = [
    ...(cfg.history ?? []),
    { created: cfg.created, created_by: createdBy, ...(comment !== undefined ? { comment } : {}) },
  ];
  const config = Buffer.from(JSON.stringify(cfg));
  const configDigest = sha256(config);
  const baseLayers: Descriptor[] = base.manifest.layers.map((l) => ({
    mediaType: TO_OCI[l.mediaType] ?? l.mediaType,
    digest: l.digest,
    size: l.size,
    ...(l.annotations !== undefined ? { annotations: l.annotations } : {}),
  }));
  const annotations: Record<string, string> = {
    [ANNOTATION_BASE_NAME]: base.name,
    [ANNOTATION_BASE_DIGEST]: base.manifestDigest,
    "org.opencontainers.image.created": cfg.created,
  };
  if (snapshot.uid !== undefined) annotations[ANNOTATION_SNAPSHOT_UID] = snapshot.uid;
  if (snapshot.name !== undefined) annotations[ANNOTATION_SNAPSHOT_NAME] = snapshot.name;
  if (snapshot.namespace !== undefined) annotations[ANNOTATION_SNAPSHOT_NAMESPACE] = snapshot.namespace;
  const manifestObj: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
    layers: [...baseLayers, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    annotations,
  };
  const manifest = Buffer.from(JSON.stringify(manifestObj));
  return { config, configDigest, manifest, manifestDigest: sha256(manifest), baseLayers };
}

/** Whether a manifest media type is one we can extend. */
export function isImageManifestType(mediaType: string): boolean {
  return mediaType === OCI_MANIFEST || mediaType === DOCKER_MANIFEST;
}
