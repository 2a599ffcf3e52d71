// The synchronous paths the capture uses for trees of many entries must read and write exactly what
// the stream codec does: readEntryAt against readTar on GNU tar's own archives (PAX, long names, hard
// links, sparse files, xattrs), LayerEncoder against its contract, the frozen walk against the normal one.
import { execFileSync } from "node:child_process";
import { closeSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { encodeLayer, LayerEncoder } from "../../src/committer/layer.js";
import { emptyHeader, FileBytes, readEntryAt, readTar, readTarFile, type TarEntry } from "../../src/committer/tar.js";
import { walkTree, type WalkEntry } from "../../src/committer/walk.js";

const tmp = mkdtempSync(join(tmpdir(), "tar-sync-"));
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function gnuTar(dir: string, out: string): void {
  execFileSync("tar", ["--create", `--file=${out}`, "--format=posix", "--sparse", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--sort=name", "-C", dir, "."]);
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

describe("readEntryAt", () => {
  it("reads GNU tar's archive entry by entry exactly as the stream reader does, data included", async () => {
    const d = join(tmp, "tree");
    mkdirSync(join(d, "sub", "x".repeat(120)), { recursive: true });
    writeFileSync(join(d, "sub", "f"), "content\n".repeat(100));
    linkSync(join(d, "sub", "f"), join(d, "hl"));
    symlinkSync("../".repeat(50) + "far", join(d, "sl"));
    writeFileSync(join(d, "sub", "x".repeat(120), "y".repeat(150)), "deep");
    writeFileSync(join(d, "caf\xe9"), Buffer.from([0, 1, 2]));
    // a sparse file: 1 MiB apparent, 4 KiB of data in the middle
    const sparse = join(d, "sparse");
    writeFileSync(sparse, "");
    truncateSync(sparse, 1024 * 1024);
    const fd = openSync(sparse, "r+");
    writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 512 * 1024);
    closeSync(fd);
    const archive = join(tmp, "tree.tar");
    gnuTar(d, archive);

    const streamed: { header: TarEntry["header"]; data: Buffer; offset: number | undefined }[] = [];
    for await (const e of readTar(Readable.from([readFileSync(archive)]) as AsyncIterable<Buffer>)) {
      streamed.push({ header: e.header, data: await collect(e.body), offset: e.offset });
    }
    const afd = openSync(archive, "r");
    try {
      const fb = new FileBytes(afd, 0, 4096); // a small read-ahead: reads that cross its edge
      const synced: { header: TarEntry["header"]; data: Buffer; offset: number }[] = [];
      for (let at = readEntryAt(fb, 0); at !== undefined; at = readEntryAt(fb, at.next)) {
        let data: Buffer;
        if (at.sparseSize !== undefined) {
          const first = await readTarFile(fb, at.offset).next();
          data = first.done === true ? Buffer.alloc(0) : await collect(first.value.body);
        } else {
          fb.position = at.dataAt;
          const parts: Buffer[] = [];
          for (let left = at.stored; left > 0; ) {
            const c = Buffer.from(fb.chunkSync(left));
            left -= c.length;
            parts.push(c);
          }
          data = Buffer.concat(parts);
        }
        synced.push({ header: at.header, data, offset: at.offset });
      }
      expect(synced.map((e) => e.header)).toEqual(streamed.map((e) => e.header));
      expect(synced.map((e) => e.offset)).toEqual(streamed.map((e) => e.offset));
      for (const [i, e] of synced.entries()) expect(e.data.equals(streamed[i]?.data ?? Buffer.alloc(1))).toBe(true);
      const names = synced.map((e) => e.header.name);
      expect(names).toContain(`./sub/${"x".repeat(120)}/${"y".repeat(150)}`);
      expect(synced.find((e) => e.header.name === "./sparse")?.data.length).toBe(1024 * 1024);
      expect(synced.find((e) => e.header.name === "./sub/f")?.header).toMatchObject({ type: "link", linkname: "./hl" });
      expect(synced.every((e) => e.header.ctimeNs !== undefined)).toBe(true);
    } finally {
      closeSync(afd);
    }
  });

  it("ends at the end-of-archive blocks and rejects a corrupt header", () => {
    const archive = join(tmp, "one.tar");
    const d = join(tmp, "one");
    mkdirSync(d);
    writeFileSync(join(d, "a"), "a");
    gnuTar(d, archive);
    const bytes = readFileSync(archive);
    const fd = openSync(archive, "r");
    try {
      const fb = new FileBytes(fd);
      const root = readEntryAt(fb, 0);
      const a = root === undefined ? undefined : readEntryAt(fb, root.next);
      expect(a?.header.name).toBe("./a");
      expect(a === undefined ? "none" : readEntryAt(fb, a.next)).toBeUndefined();
    } finally {
      closeSync(fd);
    }
    const bad = Buffer.from(bytes);
    bad[5] = 0x41; // inside the first header block's name
    const badPath = join(tmp, "bad.tar");
    writeFileSync(badPath, bad);
    const bfd = openSync(badPath, "r");
    try {
      expect(() => readEntryAt(new FileBytes(bfd), 0)).toThrow(/checksum/);
    } finally {
      closeSync(bfd);
    }
  });
});

describe("LayerEncoder", () => {
  it("writes what encodeLayer writes, and refuses a file entry with missing or extra data", async () => {
    const entries = [
      { header: { ...emptyHeader("d", "dir"), mtime: 1_700_000_000.5 }, data: [] as Buffer[] },
      { header: { ...emptyHeader("d/f", "file"), size: 700_000 }, data: [Buffer.alloc(300_000, 1), Buffer.alloc(400_000, 2)] },
      { header: { ...emptyHeader("d/e", "file"), size: 0 }, data: [] },
    ];
    const enc = new LayerEncoder();
    const pieces: Buffer[] = [];
    for (const e of entries) {
      enc.entry(e.header);
      for (const c of e.data) enc.data(c);
      pieces.push(...enc.pieces());
    }
    pieces.push(...enc.finish());
    expect(pieces.slice(0, -1).every((p) => p.length === 1024 * 1024)).toBe(true);
    const viaStream = encodeLayer(
      (async function* () {
        await Promise.resolve();
        for (const e of entries) yield { header: e.header, body: Readable.from(e.data)[Symbol.asyncIterator]() as AsyncGenerator<Buffer> };
      })(),
    );
    const streamed = await collect(viaStream.chunks);
    expect(Buffer.concat(pieces).equals(streamed)).toBe(true);
    expect(enc.result()).toEqual(viaStream.result());
    expect(enc.result().entries).toBe(3);

    const short = new LayerEncoder();
    short.entry({ ...emptyHeader("f", "file"), size: 10 });
    short.data(Buffer.alloc(4));
    expect(() => short.finish()).toThrow(/f: 6 bytes of data missing/);
    const long = new LayerEncoder();
    long.entry({ ...emptyHeader("g", "file"), size: 2 });
    expect(() => {
      long.data(Buffer.alloc(3));
    }).toThrow(/more data than its 2 bytes/);
    expect(() => new LayerEncoder().result()).toThrow(/before the stream ended/);
  });
});

describe("walkTree frozen (lstat by plain path)", () => {
  it("yields the same entries and stats as the walk through /proc/self/fd, deep paths included", async () => {
    const d = join(tmp, "walk");
    mkdirSync(d);
    // 16 levels of 250-byte names: within the 4,096 bytes an image may hold, but the deepest
    // directories' plain paths are too long to resolve, and the walk reaches them through their fd
    execFileSync("sh", ["-c", 'for i in $(seq 10 25); do n=$(printf "%0248d$i" 0); mkdir "$n" && cd "$n"; done; echo x > "leaf$(printf %056d 0)"'], { cwd: d });
    mkdirSync(join(d, "b"));
    writeFileSync(join(d, "b", "\xff\xfe"), "y");
    symlinkSync("/etc", join(d, "b", "link"));
    const all = async (frozen: boolean): Promise<WalkEntry[]> => {
      const out: WalkEntry[] = [];
      for await (const batch of walkTree(d, { frozen })) out.push(...batch);
      return out;
    };
    const plain = await all(true);
    const viaFd = await all(false);
    expect(plain).toEqual(viaFd);
    expect(plain.length).toBe(16 + 1 + 1 + 2);
    expect(Math.max(...plain.map((e) => e.path.length))).toBeGreaterThan(4000);
    expect(plain.find((e) => e.path.endsWith(`/leaf${"0".repeat(56)}`))?.stat.kind).toBe("file");
    expect(plain.find((e) => e.path === "b/link")?.stat.kind).toBe("symlink");
  });
});
