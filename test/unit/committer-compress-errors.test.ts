// compressLayer's write errors reach its caller as a rejection: an 'error' event with no listener
// would be an uncaught exception that kills the committer after the resume, without its clear message.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { compressLayer } from "../../src/committer/compress.js";
import { ScratchFullError } from "../../src/committer/layer.js";

const dir = mkdtempSync(join(tmpdir(), "compress-errors-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const chunks = (n: number, size: number): Readable => Readable.from(Array.from({ length: n }, (_, i) => Buffer.alloc(size, i % 251)));

describe("compressLayer errors", () => {
  it("rejects with the file error when the scratch file cannot be written", async () => {
    await expect(compressLayer(chunks(64, 64 * 1024), join(dir, "missing-dir", "layer.tar.gz"), "gzip", 1024 ** 3)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("rejects with ScratchFullError past the limit, with writes still in flight", async () => {
    // random bytes: gzip output as large as the input, many writes queued when the limit is hit
    const noisy = Readable.from(Array.from({ length: 256 }, () => randomBytes(64 * 1024)));
    await expect(compressLayer(noisy, join(dir, "full.tar.gz"), "gzip", 1024 * 1024)).rejects.toBeInstanceOf(ScratchFullError);
    await new Promise((r) => setTimeout(r, 200)); // a late write error would surface here as unhandled
  });
});
