import { Readable } from "node:stream";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { formatResult, RESULT_LIMIT } from "../../src/committer/cli.js";
import { compressLayer } from "../../src/committer/compress.js";
import {
  ANNOTATION_SNAPSHOT_NAME,
  ANNOTATION_SNAPSHOT_NAMESPACE,
  ANNOTATION_SNAPSHOT_UID,
  assembleImage,
  type BaseImage,
} from "../../src/committer/image.js";
import { checkRuntime } from "../../src/committer/lookup.js";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decompress } from "@mongodb-js/zstd";
import { gunzipSync } from "node:zlib";

const d = (c: string): string => `sha256:${c.repeat(64)}`;

const base: BaseImage = {
  name: "docker.io/library/python:3.12",
  manifestDigest: d("9"),
  manifest: {
    schemaVersion: 2,
    mediaType: "application/vnd.docker.distribution.manifest.v2+json",
    config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: d("c"), size: 100 },
    layers: [
      { mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: d("1"), size: 10 },
      { mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", digest: d("2"), size: 20 },
    ],
  },
  config: {
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/bin"], Cmd: ["python3"] },
    rootfs: { type: "layers", diff_ids: [d("a"), d("b")] },
    history: [{ created_by: "base 1" }, { created_by: "ENV x", empty_layer: true }, { created_by: "base 2" }],
  },
};
const layer = { digest: d("e"), size: 42, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", diffId: d("f") };
const t0 = new Date("2026-01-02T03:04:05Z");

describe("image assembly", () => {
  it("appends the snapshot layer, its diff_id and a history entry to the base image", () => {
    const img = assembleImage(base, layer, { uid: "uid-1", name: "snap", namespace: "ns" }, t0, "committer");
    const cfg = JSON.parse(img.config.toString()) as { rootfs: { diff_ids: string[] }; history: { created_by: string; comment?: string }[]; config: unknown; created: string };
    expect(cfg.rootfs.diff_ids).toEqual([d("a"), d("b"), d("f")]);
    expect(cfg.history).toHaveLength(4);
    expect(cfg.history[3]).toEqual({ created: t0.toISOString(), created_by: "committer", comment: "snapshot ns/snap" });
    expect(cfg.config).toEqual(base.config.config);
    expect(cfg.created).toBe(t0.toISOString());
    const m = JSON.parse(img.manifest.toString()) as { mediaType: string; config: { digest: string; mediaType: string }; layers: { mediaType: string; digest: string }[]; annotations: Record<string, string> };
    expect(m.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect(m.config).toMatchObject({ mediaType: "application/vnd.oci.image.config.v1+json", digest: img.configDigest });
    expect(m.layers.map((l) => [l.mediaType, l.digest])).toEqual([
      ["application/vnd.oci.image.layer.v1.tar+gzip", d("1")],
      ["application/vnd.oci.image.layer.v1.tar+zstd", d("2")],
      [layer.mediaType, layer.digest],
    ]);
    expect(m.annotations).toMatchObject({
      [ANNOTATION_SNAPSHOT_UID]: "uid-1",
      [ANNOTATION_SNAPSHOT_NAME]: "snap",
      [ANNOTATION_SNAPSHOT_NAMESPACE]: "ns",
      "org.opencontainers.image.base.name": base.name,
      "org.opencontainers.image.base.digest": base.manifestDigest,
    });
    expect(img.manifestDigest).toBe(`sha256:${createHash("sha256").update(img.manifest).digest("hex")}`);
    expect(base.config.rootfs?.diff_ids).toHaveLength(2); // the input is not modified
  });

  it("gives two snapshots of identical content different digests, and the same snapshot the same one", () => {
    const a = assembleImage(base, layer, { uid: "uid-1" }, t0, "c");
    const b = assembleImage(base, layer, { uid: "uid-2" }, t0, "c");
    const again = assembleImage(base, layer, { uid: "uid-1" }, t0, "c");
    expect(a.manifestDigest).not.toBe(b.manifestDigest);
    expect(a.manifestDigest).toBe(again.manifestDigest);
  });

  it("refuses a base image whose config and manifest disagree on the layers", () => {
    const broken: BaseImage = { ...base, config: { ...base.config, rootfs: { type: "layers", diff_ids: [d("a")] } } };
    expect(() => assembleImage(broken, layer, {}, t0, "c")).toThrow(/config lists 1 layers but the manifest has 2/);
  });
});

describe("runtime check", () => {
  it.each(["io.containerd.runc.v2", "io.containerd.runc.v1", "io.containerd.runtime.v1.linux"])("accepts %s", (r) => {
    expect(checkRuntime(r)).toBeUndefined();
  });
  it.each([
    ["io.containerd.runsc.v1", /gVisor/],
    ["io.containerd.kata.v2", /Kata/],
    ["io.containerd.kata-qemu.v2", /Kata/],
    ["io.containerd.wasmtime.v1", /not supported/],
  ])("refuses %s with a clear reason", (r, msg) => {
    expect(checkRuntime(r)).toMatch(msg);
  });
});

describe("result", () => {
  it("stays under 4 KiB however long the error", () => {
    const s = formatResult({ error: "x".repeat(10_000) + "é".repeat(3000) });
    expect(Buffer.byteLength(s)).toBeLessThanOrEqual(RESULT_LIMIT);
    expect((JSON.parse(s) as { error: string }).error.startsWith("xxx")).toBe(true);
  });
  it("is compact JSON in the documented shape", () => {
    const r = { containers: [{ name: "main", image: "r/x:1", digest: d("1"), sizeBytes: 5 }], freezeMillis: 12 };
    expect(JSON.parse(formatResult(r))).toEqual(r);
  });
});

describe("compression", () => {
  const dir = mkdtempSync(join(tmpdir(), "compress-unit-"));
  const data = Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.alloc(1024 * 1024, i % 7)));
  const source = (): AsyncIterable<Buffer> => {
    const pieces: Buffer[] = [];
    for (let i = 0; i < data.length; i += 65536) pieces.push(data.subarray(i, i + 65536));
    return Readable.from(pieces) as AsyncIterable<Buffer>;
  };

  it("gzip: streams, and digest and size describe the file written", async () => {
    const out = await compressLayer(source(), join(dir, "l.gz"), "gzip", 1e9);
    const bytes = readFileSync(out.path);
    expect(out.size).toBe(bytes.length);
    expect(out.digest).toBe(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);
    expect(gunzipSync(bytes).equals(data)).toBe(true);
    expect(out.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
  });

  it("zstd: concatenated frames decode to the original (library and zstd CLI)", async () => {
    const out = await compressLayer(source(), join(dir, "l.zst"), "zstd", 1e9);
    const bytes = readFileSync(out.path);
    expect(out.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+zstd");
    expect((await decompress(bytes)).equals(data)).toBe(true);
    try {
      const viaCli = execFileSync("zstd", ["-dc"], { input: bytes, maxBuffer: 64 * 1024 * 1024 });
      expect(viaCli.equals(data)).toBe(true);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw e;
    }
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
});
