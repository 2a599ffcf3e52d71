// Compression of a captured layer after the containers are running again: gzip or zstd, on several
// cores at once, in bounded memory (a few pieces in flight). Digest and size of the compressed blob are
// computed while writing.
//
// gzip the way pigz does it: the layer is cut into pieces, each deflated (zlib level 6) on its own
// thread with the previous piece's last 32 KiB as its dictionary, every piece but the last ended with
// a sync flush (byte-aligned, not final); the raw deflate streams are concatenated between one gzip
// header and one trailer (CRC-32 and length of the whole). The result is one ordinary gzip member
// (RFC 1952) that every reader decompresses — nearly the size of a single-threaded stream.
//
// zstd: @mongodb-js/zstd only compresses whole buffers, so pieces are compressed as independent zstd
// frames and concatenated — a valid zstd stream (RFC 8878 §3.1: a stream is a sequence of frames) that
// every decoder, containerd's included, reads as one.
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { availableParallelism } from "node:os";
import { finished } from "node:stream/promises";
import { promisify } from "node:util";
import { constants as Z, crc32, deflateRaw } from "node:zlib";
import { compress as zstdCompress } from "@mongodb-js/zstd";
import { GcPacer } from "./gc-pacing.js";
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
const GZIP_PIECE = 1024 * 1024;
const GZIP_LEVEL = 6;
const WINDOW = 32 * 1024;

/** Pieces compressed at once: the cores there are (zlib runs on libuv's thread pool), at most 4. */
const IN_FLIGHT = Math.max(1, Math.min(4, availableParallelism()));

/** Cuts a stream into pieces of exactly `size` bytes (the last one shorter; one empty piece for an empty stream). */
async function* pieces(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const c of source) {
    let b = c;
    while (b.length > 0) {
      const take = Math.min(size - have, b.length);
      parts.push(b.subarray(0, take));
      have += take;
      b = b.subarray(take);
      if (have === size) {
        // a piece that arrived whole (the layer encoder's are exactly this size) is passed on, not copied
        yield parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0 || parts.length === 0) yield Buffer.concat(parts);
}

/** Runs `work` on each item with at most `n` running, yielding the results in order. */
async function* ordered<T, R>(items: AsyncIterable<T>, n: number, work: (item: T) => Promise<R>): AsyncGenerator<R> {
  const running: Promise<R>[] = [];
  for await (const item of items) {
    const p = work(item);
    p.catch(() => undefined); // awaited below, in order; a rejection is never unhandled meanwhile
    running.push(p);
    if (running.length >= n) yield await (running.shift() as Promise<R>);
  }
  while (running.length > 0) yield await (running.shift() as Promise<R>);
}

const deflateRawAsync = promisify(deflateRaw) as (buf: Buffer, opts: object) => Promise<Buffer>;

// gzip header: magic, deflate, no flags, no mtime (reproducible), no extra flags, OS unknown
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);

async function* gzipChunks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield GZIP_HEADER;
  let crc = 0;
  let length = 0;
  // each piece is known not to be the last only when the next one exists: one is held back
  async function* tagged(): AsyncGenerator<{ piece: Buffer; dictionary: Buffer | undefined; last: boolean }> {
    let held: Buffer | undefined;
    let before: Buffer | undefined;
    for await (const piece of pieces(source, GZIP_PIECE)) {
      if (held !== undefined) {
        yield { piece: held, dictionary: before, last: false };
        // a copy: a view would keep the whole previous piece alive until the next one is deflated
        before = Buffer.from(held.subarray(Math.max(0, held.length - WINDOW)));
      }
      held = piece;
    }
    yield { piece: held ?? Buffer.alloc(0), dictionary: before, last: true };
  }
  const deflate = ({ piece, dictionary, last }: { piece: Buffer; dictionary: Buffer | undefined; last: boolean }): Promise<Buffer> => {
    crc = crc32(piece, crc);
    length = (length + piece.length) % 2 ** 32;
    return deflateRawAsync(piece, {
      level: GZIP_LEVEL,
      chunkSize: 256 * 1024,
      ...(dictionary !== undefined && dictionary.length > 0 ? { dictionary } : {}),
      finishFlush: last ? Z.Z_FINISH : Z.Z_SYNC_FLUSH,
    });
  };
  yield* ordered(tagged(), IN_FLIGHT, deflate);
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc >>> 0, 0);
  trailer.writeUInt32LE(length, 4);
  yield trailer;
}

async function* zstdChunks(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield* ordered(pieces(source, ZSTD_PIECE), IN_FLIGHT, (p) => zstdCompress(p, ZSTD_LEVEL));
}

/** The source's chunks, counted by the pacer as they pass (the layer's pieces die once deflated). */
async function* paced(source: AsyncIterable<Buffer>, pacer: GcPacer): AsyncGenerator<Buffer> {
  for await (const c of source) {
    pacer.streamed(c.length);
    yield c;
  }
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
    const pacer = new GcPacer();
    const chunks = compression === "zstd" ? zstdChunks(paced(source, pacer)) : gzipChunks(paced(source, pacer));
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
