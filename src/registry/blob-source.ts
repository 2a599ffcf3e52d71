// Where blob bytes come from. Every upload attempt opens the source anew, so a retried upload never
// reads a half-consumed stream: pass a file path or a factory, never a stream.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import { digestFile, sha256Digest, toBytes } from "./digest.js";

export type BlobSource =
  /** A file, re-opened for every attempt and read in ranges for chunked uploads. */
  | { readonly path: string }
  /** A factory called once per attempt; must yield the same bytes every time. */
  | { readonly open: () => Readable | Promise<Readable> }
  /** Small blobs (configs) held in memory. */
  | { readonly bytes: Uint8Array };

export async function openSource(src: BlobSource, start = 0, endInclusive?: number): Promise<Readable> {
  if ("path" in src) return createReadStream(src.path, { start, ...(endInclusive === undefined ? {} : { end: endInclusive }) });
  if ("bytes" in src) return Readable.from([src.bytes.subarray(start, endInclusive === undefined ? undefined : endInclusive + 1)]);
  if (start !== 0 || endInclusive !== undefined) throw new Error("ranged reads need a file or bytes source");
  return await src.open();
}

/** Digest and size when they can be had without consuming a one-shot resource. */
export async function describeSource(src: BlobSource): Promise<{ digest: string; size: number } | undefined> {
  if ("bytes" in src) return { digest: sha256Digest(src.bytes), size: src.bytes.byteLength };
  if ("path" in src) return digestFile(src.path);
  return undefined;
}

export async function sourceSize(src: BlobSource): Promise<number | undefined> {
  if ("bytes" in src) return src.bytes.byteLength;
  if ("path" in src) return (await stat(src.path)).size;
  return undefined;
}

/** Yields a stream's chunks as Uint8Array, calling `onChunk` for each (hashing, progress). */
export async function* chunksOf(stream: Readable, onChunk: (c: Uint8Array) => void): AsyncGenerator<Uint8Array> {
  try {
    for await (const c of stream) {
      const b = toBytes(c);
      onChunk(b);
      yield b;
    }
  } finally {
    stream.destroy();
  }
}

/**
 * Cuts a stream into consecutive pieces of `size` bytes (the last may be shorter), buffering one
 * piece at a time: memory is bounded by the chunk size, not the blob size.
 */
export async function* pieces(stream: Readable, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  try {
    for await (const c of stream) {
      const u = toBytes(c);
      let b = Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
      while (b.byteLength > 0) {
        const take = Math.min(size - have, b.byteLength);
        parts.push(b.subarray(0, take));
        have += take;
        b = b.subarray(take);
        if (have === size) {
          yield Buffer.concat(parts);
          parts = [];
          have = 0;
        }
      }
    }
    if (have > 0) yield Buffer.concat(parts);
  } finally {
    stream.destroy();
  }
}
