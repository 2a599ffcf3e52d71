// The registry client against the real registry (Debian's docker-registry, distribution 2.8):
// pushes, pulls, skips, mounts, chunked uploads, digest checks, deletion.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isRegistryError, parseImageReference, RegistryError, sha256Digest } from "../../src/registry/index.js";
import { missingComponents } from "../support/components.js";
import { makeTestLayer, pushTestImage } from "../support/registry-image.js";
import { rejection, startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["docker-registry"]);

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe.skipIf(missing)("registry client against the real registry", () => {
  let reg: TestRegistry;
  let scratch: string;

  beforeAll(async () => {
    reg = await startRegistry();
    scratch = mkdtempSync(join(tmpdir(), "registry-test-"));
  });
  afterAll(async () => {
    await reg.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  it("pings the registry and sees the distribution v2 API", async () => {
    const { apiVersion } = await reg.client().ping();
    expect(apiVersion).toBe("registry/2.0");
  });

  it("pushes a multi-layer image and pulls back the same manifest, config and layers", async () => {
    const client = reg.client();
    const img = await pushTestImage(client, "snapshots/multi", { layers: 3, tag: "v1", annotations: { "sandbox.opensandbox.io/snapshot-uid": "uid-1" } });
    const ref = parseImageReference(img.reference);
    expect(ref).toMatchObject({ registry: reg.url, repository: "snapshots/multi", tag: "v1" });

    const m = await client.getManifest(ref.repository, "v1");
    expect(m.digest).toBe(img.digest);
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(m.annotations).toEqual({ "sandbox.opensandbox.io/snapshot-uid": "uid-1" });
    expect(m.manifest).toEqual(img.manifest);

    const byDigest = await client.getManifest(ref.repository, img.digest);
    expect(byDigest.digest).toBe(img.digest);
    expect(await client.resolveTag(ref.repository, "v1")).toBe(img.digest);
    expect(await client.headManifest(ref.repository, "v1")).toMatchObject({ digest: img.digest, mediaType: "application/vnd.oci.image.manifest.v1+json" });
    expect(await client.manifestAnnotations(ref.repository, "v1")).toEqual({ digest: img.digest, annotations: { "sandbox.opensandbox.io/snapshot-uid": "uid-1" } });

    expect(await readAll(await client.openBlob(ref.repository, img.config.digest))).toEqual(img.config.bytes);
    for (const layer of img.layers) {
      const got = await readAll(await client.openBlob(ref.repository, layer.digest));
      expect(sha256Digest(got)).toBe(layer.digest);
      expect(got).toEqual(layer.bytes);
    }
  });

  it("also stores and serves Docker schema 2 manifests", async () => {
    const client = reg.client();
    const layer = await makeTestLayer();
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer.diffId] } }));
    await client.pushBlob("docker/style", { bytes: layer.bytes });
    const cfg = await client.pushBlob("docker/style", { bytes: config });
    const manifest = {
      schemaVersion: 2 as const,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: cfg.digest, size: cfg.size },
      layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: layer.digest, size: layer.size }],
    };
    const put = await client.putManifest("docker/style", "d1", manifest);
    const head = await client.headManifest("docker/style", "d1");
    expect(head).toMatchObject({ digest: put.digest, mediaType: "application/vnd.docker.distribution.manifest.v2+json" });
  });

  it("skips a blob the repository already has", async () => {
    const client = reg.client();
    const layer = await makeTestLayer(10_000);
    const first = await client.pushBlob("skip/repo", { bytes: layer.bytes });
    expect(first).toEqual({ digest: layer.digest, size: layer.size, outcome: "uploaded" });
    const again = await client.pushBlob("skip/repo", { bytes: layer.bytes });
    expect(again).toEqual({ digest: layer.digest, size: layer.size, outcome: "exists" });
    expect(await client.statBlob("skip/repo", layer.digest)).toEqual({ digest: layer.digest, size: layer.size });
    expect(await client.statBlob("skip/repo", sha256Digest("absent"))).toBeUndefined();
  });

  it("mounts a blob across repositories instead of uploading it", async () => {
    const client = reg.client();
    const layer = await makeTestLayer(20_000);
    await client.pushBlob("mount/source", { bytes: layer.bytes });
    const mounted = await client.pushBlob("mount/target", { open: () => Readable.from([layer.bytes]) }, { digest: layer.digest, mountFrom: ["mount/source"] });
    expect(mounted.outcome).toBe("mounted");
    expect(await client.statBlob("mount/target", layer.digest)).toEqual({ digest: layer.digest, size: layer.size });
  });

  it("falls back to an upload when the mount source does not have the blob (202)", async () => {
    const client = reg.client();
    const layer = await makeTestLayer(5_000);
    expect(await client.mountBlob("mount/other", layer.digest, "mount/empty-source")).toBe(false);
    const r = await client.pushBlob("mount/other", { bytes: layer.bytes }, { mountFrom: ["mount/empty-source"] });
    expect(r.outcome).toBe("uploaded");
    expect(await client.statBlob("mount/other", layer.digest)).toEqual({ digest: layer.digest, size: layer.size });
  });

  it("uploads a file in chunks (PATCH with Content-Range) and the registry has the exact bytes", async () => {
    const client = reg.client();
    const data = randomBytes(1_000_003);
    const file = join(scratch, "chunked.bin");
    writeFileSync(file, data);
    const r = await client.pushBlob("chunked/file", { path: file }, { chunkSize: 256 * 1024 });
    expect(r).toEqual({ digest: sha256Digest(data), size: data.byteLength, outcome: "uploaded" });
    expect(await readAll(await client.openBlob("chunked/file", r.digest))).toEqual(data);
  });

  it("uploads a stream of unknown digest in chunks and computes the digest on the way", async () => {
    const client = reg.client();
    const data = randomBytes(700_000);
    const r = await client.pushBlob("chunked/stream", { open: () => Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]) }, { chunkSize: 300_000 });
    expect(r).toMatchObject({ digest: sha256Digest(data), outcome: "uploaded" });
    expect(await client.statBlob("chunked/stream", r.digest)).toEqual({ digest: r.digest, size: data.byteLength });
  });

  it("streams an upload of unknown digest (PATCH then PUT ?digest=)", async () => {
    const client = reg.client();
    const data = randomBytes(300_000);
    const r = await client.pushBlob("streamed/blob", { open: () => Readable.from([data]) });
    expect(r).toEqual({ digest: sha256Digest(data), size: data.byteLength, outcome: "uploaded" });
  });

  it("rejects an upload whose bytes do not match the declared digest", async () => {
    const client = reg.client();
    const data = randomBytes(50_000);
    const wrong = sha256Digest("something else");
    const e = await rejection(client.pushBlob("mismatch/repo", { open: () => Readable.from([data]) }, { digest: wrong }));
    expect(e.kind).toBe("digest-mismatch");
    expect(e.message).toContain(`${reg.url}/mismatch/repo`);
    expect(e.message).toContain("blob-upload");
    expect(await client.statBlob("mismatch/repo", wrong)).toBeUndefined();
    // Chunked: the mismatch is found locally before the final PUT.
    const e2 = await rejection(client.pushBlob("mismatch/repo", { open: () => Readable.from([data]) }, { digest: wrong, chunkSize: 20_000 }));
    expect(e2.kind).toBe("digest-mismatch");
  });

  it("deletes a manifest by digest; afterwards HEAD finds nothing and a second delete reports not-found", async () => {
    const client = reg.client();
    const img = await pushTestImage(client, "delete/me", { tag: "snap-1" });
    expect(await client.deleteManifest("delete/me", img.digest)).toBe("deleted");
    expect(await client.headManifest("delete/me", img.digest)).toBeUndefined();
    expect(await client.resolveTag("delete/me", "snap-1")).toBeUndefined();
    expect(await client.deleteManifest("delete/me", img.digest)).toBe("not-found");
    const e = await rejection(client.getManifest("delete/me", img.digest));
    expect(e.kind).toBe("not-found");
    expect(e.status).toBe(404);
  });

  it("answers not-found for a tag that does not exist", async () => {
    const client = reg.client();
    expect(await client.resolveTag("nothing/here", "v0")).toBeUndefined();
    expect(await client.manifestAnnotations("nothing/here", "v0")).toBeUndefined();
  });

  it("refuses a manifest that names a blob the repository lacks, with a clear error", async () => {
    const client = reg.client();
    const e = await rejection(
      client.putManifest("bad/manifest", "x", {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256Digest("nope"), size: 4 },
        layers: [],
      }),
    );
    expect(e.kind).toBe("invalid");
    expect(e.status).toBe(400);
    expect(e.message).toContain("manifest-put");
  });
});

describe.skipIf(missing)("a registry with deletion disabled", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ deletion: false });
  });
  afterAll(async () => {
    await reg.close();
  });

  it("answers 405, reported as the distinct kind deletion-unsupported", async () => {
    const client = reg.client();
    const img = await pushTestImage(client, "keep/me", { layers: 1 });
    const e = await rejection(client.deleteManifest("keep/me", img.digest));
    expect(isRegistryError(e, "deletion-unsupported")).toBe(true);
    expect(e.status).toBe(405);
    expect(e.transient).toBe(false);
    expect(e.message).toContain(`${reg.url}/keep/me`);
    expect(await client.resolveTag("keep/me", "latest")).toBe(img.digest);
  });
});

describe.skipIf(missing)("blob sources that fail", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => {
    await reg.close();
  });

  it("keeps the kind of a RegistryError raised by the source (e.g. a copy from another registry)", async () => {
    const client = reg.client();
    const bad = sha256Digest("never pushed");
    const failing = (): Readable =>
      Readable.from(
        (async function* (): AsyncGenerator<Buffer> {
          yield Buffer.from("partial");
          await new Promise((r) => setTimeout(r, 5));
          throw new RegistryError({ kind: "digest-mismatch", operation: "blob-get", registry: "other.example", repository: "x", reason: "downloaded bytes differ" });
        })(),
      );
    const e = await rejection(client.pushBlob("copy/dst", { open: failing }, { digest: bad }));
    expect(e.kind).toBe("digest-mismatch");
    expect(e.registry).toBe("other.example");
  });

  it("reports an unreadable file with its path, without contacting the registry", async () => {
    const e = await rejection(reg.client().pushBlob("file/missing", { path: "/nonexistent/layer.tar.gz" }));
    expect(e.kind).toBe("invalid");
    expect(e.message).toContain("/nonexistent/layer.tar.gz");
    expect(e.message).toContain("ENOENT");
  });
});
