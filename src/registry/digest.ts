// Content digests (sha256) computed while bytes stream past, so no blob is ever held in memory.
import { createHash, type Hash } from "node:crypto";
import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** Counts and hashes bytes as they are handed to it. */
export class DigestCounter {
  private readonly hash: Hash = createHash("sha256");
  private count = 0;
  private final: string | undefined;

  update(chunk: Uint8Array): void {
    if (this.final !== undefined) throw new Error("DigestCounter updated after digest()");
    this.hash.update(chunk);
    this.count += chunk.byteLength;
  }

  get size(): number {
    return this.count;
  }

  digest(): string {
    this.final ??= `sha256:${this.hash.digest("hex")}`;
    return this.final;
  }
}

/** Digest and size of a stream, read to its end in bounded memory. */
export async function digestStream(stream: Readable): Promise<{ digest: string; size: number }> {
  const d = new DigestCounter();
  for await (const chunk of stream) d.update(toBytes(chunk));
  return { digest: d.digest(), size: d.size };
}

export async function digestFile(path: string): Promise<{ digest: string; size: number }> {
  return digestStream(createReadStream(path));
}

export function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (typeof chunk === "string") return Buffer.from(chunk);
  throw new TypeError("blob streams must yield Buffer or Uint8Array chunks");
}
