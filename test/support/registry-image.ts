// Small but valid OCI images for tests: gzipped tar layers of random files, a config whose
// rootfs.diff_ids match, and a manifest — pushed with our client so other suites get images quickly.
import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { pack } from "tar-stream";
import type { RegistryClient } from "../../src/registry/index.js";
import { sha256Digest } from "../../src/registry/digest.js";
import { type ImageManifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST } from "../../src/registry/media-types.js";

export interface TestLayer {
  readonly digest: string;
  readonly size: number;
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry). */
  readonly diffId: string;
  /** The gzipped tar. */
  readonly bytes: Buffer;
}

export interface TestImage {
  /** `registry/repository:tag` */
  readonly reference: string;
  readonly repository: string;
  readonly tag: string;
  /** Digest of the manifest. */
  readonly digest: string;
  readonly manifest: ImageManifest;
  readonly config: { readonly digest: string; readonly size: number; readonly bytes: Buffer };
  readonly layers: readonly TestLayer[];
}

/** A tar holding `files` (path → content). */
export async function tarOf(files: Readonly<Record<string, Buffer | string>>): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    p.on("data", (c: unknown) => {
      chunks.push(c as Buffer);
    });
    p.on("end", () => {
      resolve(Buffer.concat(chunks));
    });
    p.on("error", reject);
  });
  for (const [name, content] of Object.entries(files)) {
    p.entry({ name, mode: 0o644, mtime: new Date(0) }, content);
  }
  p.finalize();
  return done;
}

/** A gzipped tar layer with one random file of `bytes` bytes (so every layer's digest is unique). */
export async function makeTestLayer(bytes = 4096, name = `data/${randomBytes(6).toString("hex")}.bin`): Promise<TestLayer> {
  const tar = await tarOf({ [name]: randomBytes(bytes) });
  const gz = gzipSync(tar);
  return { digest: sha256Digest(gz), size: gz.byteLength, diffId: sha256Digest(tar), bytes: gz };
}

export interface PushTestImageOptions {
  readonly tag?: string;
  /** Number of random layers (default 3). */
  readonly layers?: number;
  /** Bytes of random data per layer (default 4096). */
  readonly layerBytes?: number;
  /** Use these layers instead of random ones (e.g. to share layers between images). */
  readonly useLayers?: readonly TestLayer[];
  readonly annotations?: Readonly<Record<string, string>>;
}

/** Builds and pushes a multi-layer OCI image into `repository`; returns everything needed to check it. */
export async function pushTestImage(client: RegistryClient, repository: string, opts: PushTestImageOptions = {}): Promise<TestImage> {
  const tag = opts.tag ?? "latest";
  const layers = opts.useLayers !== undefined ? [...opts.useLayers] : await Promise.all(Array.from({ length: opts.layers ?? 3 }, () => makeTestLayer(opts.layerBytes)));
  const configDoc = {
    architecture: "amd64",
    os: "linux",
    config: { Cmd: ["/bin/sh"] },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created_by: "test layer" })),
  };
  const configBytes = Buffer.from(JSON.stringify(configDoc));
  const config = { digest: sha256Digest(configBytes), size: configBytes.byteLength, bytes: configBytes };
  for (const l of layers) await client.pushBlob(repository, { bytes: l.bytes }, { digest: l.digest });
  await client.pushBlob(repository, { bytes: configBytes }, { digest: config.digest });
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER_GZIP, digest: l.digest, size: l.size })),
    ...(opts.annotations === undefined ? {} : { annotations: { ...opts.annotations } }),
  };
  const { digest } = await client.putManifest(repository, tag, manifest);
  return { reference: `${client.registry}/${repository}:${tag}`, repository, tag, digest, manifest, config, layers };
}
