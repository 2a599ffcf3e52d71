// A small base image built locally (no internet): busybox-static's /bin/busybox with symlinks for the
// applets the tests use, plus a few files and directories the tests change, delete or replace.
// Written as an OCI image layout tar that `ctr images import` understands.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";

export const BASE_IMAGE = "localhost/test/busybox:1";

const APPLETS = [
  "sh", "sleep", "ls", "cat", "echo", "mkdir", "rm", "rmdir", "ln", "touch", "mv", "cp", "chmod", "chown",
  "test", "true", "false", "find", "stat", "head", "dd", "mknod", "printf", "sync", "readlink", "wc", "env",
];

export interface BaseImage {
  /** The OCI layout tar. */
  readonly tar: Buffer;
  readonly name: string;
  readonly manifestDigest: string;
  readonly layerDigest: string;
  readonly diffId: string;
}

function sha256(b: Buffer): string {
  return `sha256:${createHash("sha256").update(b).digest("hex")}`;
}

async function toBuffer(p: tar.Pack): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of p) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

const MTIME = new Date("2024-01-01T00:00:00Z");

export async function baseLayerTar(busybox = "/bin/busybox"): Promise<Buffer> {
  const p = tar.pack();
  const dir = (name: string, mode = 0o755): void => {
    p.entry({ name: `${name}/`, type: "directory", mode, mtime: MTIME, uid: 0, gid: 0 });
  };
  const file = (name: string, content: string | Buffer, mode = 0o644): void => {
    p.entry({ name, type: "file", mode, mtime: MTIME, uid: 0, gid: 0 }, content);
  };
  for (const d of ["bin", "dev", "etc", "proc", "root", "sys", "run", "var", "usr", "data", "data/keep", "data/replace", "data/replace/sub"]) dir(d);
  dir("tmp", 0o1777);
  file("bin/busybox", readFileSync(busybox), 0o755);
  for (const a of APPLETS) p.entry({ name: `bin/${a}`, type: "symlink", linkname: "busybox", mtime: MTIME, mode: 0o777 });
  file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  file("etc/group", "root:x:0:\nnogroup:x:65534:\n");
  file("etc/base.txt", "from the base image\n");
  file("data/keep/a.txt", "a\n");
  file("data/keep/b.txt", "b\n");
  file("data/replace/old1.txt", "old 1\n");
  file("data/replace/sub/old2.txt", "old 2\n");
  file("data/doomed.txt", "delete me\n");
  p.finalize();
  return toBuffer(p);
}

export interface BaseImageOptions {
  /**
   * Name the manifest through a nested image index whose entry carries no `platform` (as some
   * builders write them; containerd runs such images after checking the config's os/architecture).
   */
  readonly indexWithoutPlatform?: boolean;
}

export async function buildBaseImage(name = BASE_IMAGE, opts: BaseImageOptions = {}): Promise<BaseImage> {
  const layer = await baseLayerTar();
  const diffId = sha256(layer);
  const gz = gzipSync(layer);
  const layerDigest = sha256(gz);
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      created: MTIME.toISOString(),
      config: { Env: ["PATH=/bin"], Cmd: ["/bin/sh"], WorkingDir: "/" },
      rootfs: { type: "layers", diff_ids: [diffId] },
      history: [{ created: MTIME.toISOString(), created_by: "test/support/base-image.ts" }],
    }),
  );
  const configDigest = sha256(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layerDigest, size: gz.length }],
    }),
  );
  const manifestDigest = sha256(manifest);
  const nameAnnotations = { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":").pop() ?? "1" };
  const inner = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: manifestDigest, size: manifest.length }],
    }),
  );
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        opts.indexWithoutPlatform === true
          ? { mediaType: "application/vnd.oci.image.index.v1+json", digest: sha256(inner), size: inner.length, annotations: nameAnnotations }
          : {
              mediaType: "application/vnd.oci.image.manifest.v1+json",
              digest: manifestDigest,
              size: manifest.length,
              platform: { architecture: "amd64", os: "linux" },
              annotations: nameAnnotations,
            },
      ],
    }),
  );
  const p = tar.pack();
  p.entry({ name: "oci-layout" }, JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  p.entry({ name: "index.json" }, index);
  for (const [d, b] of [
    [layerDigest, gz],
    [configDigest, config],
    [manifestDigest, manifest],
    ...(opts.indexWithoutPlatform === true ? ([[sha256(inner), inner]] as const) : []),
  ] as const) {
    p.entry({ name: `blobs/sha256/${d.slice("sha256:".length)}` }, b);
  }
  p.finalize();
  return { tar: await toBuffer(p), name, manifestDigest, layerDigest, diffId };
}
