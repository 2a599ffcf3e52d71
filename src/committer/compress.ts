// Compression of a captured layer after the containers are running again: gzip (zlib, streaming) or
// zstd. @mongodb-js/zstd only compresses whole buffers, so the layer is cut into pieces compressed as
// independent zstd frames and concatenated — a valid zstd stream (RFC 8878 §3.1: a stream is a
// sequence of frames) that every decoder, containerd's included, reads as one. Memory stays bounded by
// the piece size. Digest and size of the compressed blob are computed while writing.
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { finished } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { compress as zstdCompress } from "@mongodb-js/zstd";
import { ScratchFullError } from "./layer.js";

export type Compression = "gzip" | "zstd";

export const LAYER_MEDIA_TYPES: Readonly<Record<Compression, string>> = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
};

export interface CompressedBlob {
  readonly path: string;
  readonly digest: string;
  readonly size: number;
  readonly mediaType: string;
}

const ZSTD_PIECE = 8 * 1024 * 1024;
const ZSTD_LEVEL = 3;

async function* gzipChunks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const gz = createGzip({ level: 6 });
  const feed = (async (): Promise<void> => {
    try {
      for await (const c of source) if (!gz.write(c)) await once(gz, "drain");
      gz.end();
    } catch (e) {
      gz.destroy(e instanceof Error ? e : new Error(String(e)));
    }
  })();
  for await (const c of gz) yield c as Buffer;
  await feed;
}

async function* zstdChunks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const c of source) {
    let b = c;
    while (b.length > 0) {
      const take = Math.min(ZSTD_PIECE - have, b.length);
      parts.push(b.subarray(0, take));
      have += take;
      b = b.subarray(take);
      if (have === ZSTD_PIECE) {
        yield await zstdCompress(Buffer.concat(parts), ZSTD_LEVEL);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0 || parts.length === 0) yield await zstdCompress(Buffer.concat(parts), ZSTD_LEVEL);
}

/** Compresses `source` into `path`; stops with ScratchFullError past `limitBytes`. */
export async function compressLayer(
  source: AsyncIterable<Buffer>,
  path: string,
  compression: Compression,
  limitBytes: number,
): Promise<CompressedBlob> {
  const out = createWriteStream(path, { mode: 0o600 });
  // A write error (or one from a write still in flight when we give up and destroy the stream) must
  // reach this function's caller, never surface as an uncaught 'error' event.
  let writeError: Error | undefined;
  out.on("error", (e) => {
    writeError ??= e;
  });
  const hash = createHash("sha256");
  let size = 0;
  try {
    const chunks = compression === "zstd" ? zstdChunks(source) : gzipChunks(source);
    for await (const c of chunks) {
      if (writeError !== undefined) throw writeError;
      size += c.length;
      if (size > limitBytes) throw new ScratchFullError(limitBytes, "the compressed layer");
      hash.update(c);
      if (!out.write(c)) await once(out, "drain");
    }
    out.end();
    await finished(out);
  } catch (e) {
    out.destroy();
    throw e;
  }
  return { path, digest: `sha256:${hash.digest("hex")}`, size, mediaType: LAYER_MEDIA_TYPES[compression] };
}
