import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ContainerdClient, ContainerdError } from "../../src/containerd/client.js";
import { GrpcStatus } from "../../src/containerd/grpc.js";
import { loadBaseImage } from "../../src/committer/image.js";
import { compatiblePlatforms, normalizePlatform, only, pickIndexEntry } from "../../src/committer/platform.js";

const sha = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const INDEX = "application/vnd.oci.image.index.v1+json";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** A content store and image store holding one image (an index of manifests, each with its config). */
function store(build: (put: (o: unknown) => { digest: string; size: number }) => { mediaType: string; digest: string }): ContainerdClient {
  const blobs = new Map<string, Buffer>();
  const put = (o: unknown): { digest: string; size: number } => {
    const b = Buffer.from(JSON.stringify(o));
    blobs.set(sha(b), b);
    return { digest: sha(b), size: b.length };
  };
  const target = build(put);
  const fake = {
    namespace: "k8s.io",
    getImage: (name: string) => Promise.resolve({ name, labels: {}, target: { media_type: target.mediaType, digest: target.digest, size: 0, annotations: {} } }),
    readContentAll: (digest: string) => {
      const b = blobs.get(digest);
      return b ? Promise.resolve(b) : Promise.reject(new ContainerdError("Content.Read", GrpcStatus.NOT_FOUND, "not found"));
    },
  };
  return fake as unknown as ContainerdClient;
}

/** A manifest whose config says os/arch; returns its index entry (platform added by the caller). */
function image(put: (o: unknown) => { digest: string; size: number }, os: string, architecture: string): { mediaType: string; digest: string; size: number } {
  const config = put({ os, architecture, rootfs: { type: "layers", diff_ids: [] } });
  const m = put({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config }, layers: [] });
  return { mediaType: MANIFEST, ...m };
}

const amd64 = { os: "linux", architecture: "amd64" };

describe("choosing the base image's manifest as containerd does", () => {
  it("an index whose entries carry no platform: the first entry is used when its config matches the node", async () => {
    const client = store((put) => {
      const entry = image(put, "linux", "amd64");
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [entry] }) };
    });
    const base = await loadBaseImage(client, "localhost/noplat:1", amd64);
    expect(base.config.architecture).toBe("amd64");
  });

  it("an entry without a platform whose config is for another architecture is refused, naming both", async () => {
    const client = store((put) => {
      const entry = image(put, "linux", "arm64");
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [entry] }) };
    });
    await expect(loadBaseImage(client, "localhost/noplat:1", amd64)).rejects.toThrow(/no manifest for linux\/amd64: .*no platform\) has a config for linux\/arm64/);
  });

  it("an entry with a matching platform is preferred to one without, and the best compatible platform wins", async () => {
    let want = "";
    const client = store((put) => {
      const none = image(put, "linux", "amd64");
      const i386 = { ...image(put, "linux", "386"), platform: { os: "linux", architecture: "386" } };
      const x86 = { ...image(put, "linux", "amd64"), platform: { os: "linux", architecture: "x86_64" } };
      const arm = { ...image(put, "linux", "arm64"), platform: { os: "linux", architecture: "arm64" } };
      want = x86.digest;
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [none, i386, arm, x86] }) };
    });
    expect((await loadBaseImage(client, "localhost/multi:1", amd64)).manifestDigest).toBe(want);
  });

  it("a 386-only index runs on amd64 (containerd's compatibility order), an arm64-only one does not", async () => {
    const ok = store((put) => {
      const e = { ...image(put, "linux", "386"), platform: { os: "linux", architecture: "386" } };
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [e] }) };
    });
    expect((await loadBaseImage(ok, "localhost/i386:1", amd64)).config.architecture).toBe("386");
    const no = store((put) => {
      const e = { ...image(put, "linux", "arm64"), platform: { os: "linux", architecture: "arm64" } };
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [e] }) };
    });
    await expect(loadBaseImage(no, "localhost/arm:1", amd64)).rejects.toThrow(/has no manifest for linux\/amd64 \(its index lists: linux\/arm64\)/);
  });

  it("a nested index without platforms is followed", async () => {
    const client = store((put) => {
      const entry = image(put, "linux", "amd64");
      const inner = { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [entry] }) };
      return { mediaType: INDEX, ...put({ schemaVersion: 2, mediaType: INDEX, manifests: [inner] }) };
    });
    expect((await loadBaseImage(client, "localhost/nested:1", amd64)).config.os).toBe("linux");
  });
});

describe("platform matching (containerd's platforms package)", () => {
  it("normalises names", () => {
    expect(normalizePlatform({ architecture: "x86_64" })).toEqual({ os: "linux", architecture: "amd64", variant: "" });
    expect(normalizePlatform({ os: "Linux", architecture: "aarch64", variant: "v8" })).toEqual({ os: "linux", architecture: "arm64", variant: "" });
    expect(normalizePlatform({ os: "linux", architecture: "armhf" })).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(normalizePlatform({ os: "linux", architecture: "arm" })).toEqual({ os: "linux", architecture: "arm", variant: "v7" });
    expect(normalizePlatform({ os: "linux", architecture: "i386", variant: "x" })).toEqual({ os: "linux", architecture: "386", variant: "" });
  });

  it("orders compatible platforms as containerd does", () => {
    const names = (p: Parameters<typeof compatiblePlatforms>[0]): string[] => compatiblePlatforms(p).map((x) => [x.architecture, x.variant].filter(Boolean).join("/"));
    expect(names(amd64)).toEqual(["amd64", "386"]);
    expect(names({ os: "linux", architecture: "amd64", variant: "v3" })).toEqual(["amd64/v3", "amd64/v2", "amd64", "386"]);
    expect(names({ os: "linux", architecture: "arm64" })).toEqual(["arm64", "arm/v8", "arm/v7", "arm/v6", "arm/v5"]);
    expect(names({ os: "linux", architecture: "arm", variant: "v7" })).toEqual(["arm/v7", "arm/v6", "arm/v5"]);
  });

  it("picks matching entries first (index order among equals), entries without a platform last, and never a foreign one", () => {
    const m = only(amd64);
    const e = (name: string, platform?: { os?: string; architecture?: string }): { name: string; platform?: { os?: string; architecture?: string } } => (platform ? { name, platform } : { name });
    expect(pickIndexEntry([e("none"), e("a", amd64), e("b", amd64)], m)?.name).toBe("a");
    expect(pickIndexEntry([e("none1"), e("none2")], m)?.name).toBe("none1");
    expect(pickIndexEntry([e("arm", { os: "linux", architecture: "arm64" }), e("win", { os: "windows", architecture: "amd64" })], m)).toBeUndefined();
    expect(pickIndexEntry([e("empty", {})], m)).toBeUndefined();
  });
});
