// The layer's gzip is made on several threads (pigz's way: pieces deflated with the previous piece's
// tail as dictionary, sync-flushed, between one header and one trailer). It must be one ordinary gzip
// member that zlib and GNU gzip read back byte for byte, for any length around the piece boundaries,
// and barely larger than a single-threaded stream.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { compressLayer } from "../../src/committer/compress.js";

const dir = mkdtempSync(join(tmpdir(), "compress-unit-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const PIECE = 1024 * 1024; // compress.ts GZIP_PIECE

/** Compressible text with some noise, in chunks of odd sizes. */
function layerLike(size: number): Buffer {
  const out = Buffer.alloc(size);
  let i = 0;
  for (let n = 0; i < size; n++) {
    const line = `file ${n} ${"x".repeat(n % 97)} ${randomBytes(4).toString("hex")}\n`;
    i += out.write(line, i, "latin1");
  }
  return out;
}

async function* inChunks(b: Buffer, size: number): AsyncGenerator<Buffer> {
  await Promise.resolve();
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

describe("compressLayer gzip on several threads", () => {
  it.each([0, 1, 1000, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 12345])("%i bytes: one gzip member that zlib and GNU gzip read back exactly", async (size) => {
    const input = layerLike(size);
    const path = join(dir, `l-${size}.tar.gz`);
    const blob = await compressLayer(inChunks(input, 300_007), path, "gzip", 1024 ** 3);
    const bytes = readFileSync(path);
    expect(blob.size).toBe(bytes.length);
    expect(blob.digest).toBe(`sha256:${createHash("sha256").update(bytes).digest("hex")}`);
    expect(blob.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
    expect(gunzipSync(bytes).equals(input)).toBe(true);
    expect(execFileSync("gzip", ["-dc"], { input: bytes, maxBuffer: 64 * 1024 * 1024 }).equals(input)).toBe(true);
    // one member for the whole: its trailer counts every byte (the last of several members would count its own)
    expect(bytes.readUInt32LE(bytes.length - 4)).toBe(size % 2 ** 32);
  });

  it("is deterministic and within 1 % of a single-threaded gzip of the same bytes", async () => {
    const input = layerLike(5 * PIECE + 777);
    const a = await compressLayer(inChunks(input, 1 << 20), join(dir, "a.gz"), "gzip", 1024 ** 3);
    const b = await compressLayer(inChunks(input, 65_536), join(dir, "b.gz"), "gzip", 1024 ** 3);
    expect(a.digest).toBe(b.digest);
    const single = gzipSync(input, { level: 6 }).length;
    expect(a.size).toBeLessThan(single * 1.01);
  });

  it("zstd pieces still decode as one stream", async () => {
    const input = layerLike(9 * 1024 * 1024);
    const path = join(dir, "l.tar.zst");
    await compressLayer(inChunks(input, 1 << 20), path, "zstd", 1024 ** 3);
    const { decompress } = await import("@mongodb-js/zstd");
    expect((await decompress(readFileSync(path))).equals(input)).toBe(true);
  });
});
