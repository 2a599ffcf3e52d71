import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync, linkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { encodeHeader, emptyHeader, END_OF_ARCHIVE, paddingFor, readTar, type TarHeader } from "../../src/committer/tar.js";

/** Delivers in odd-sized pieces to exercise the reader's buffering. */
function once(b: Buffer): AsyncIterable<Buffer> {
  const pieces: Buffer[] = [];
  for (let i = 0; i < b.length; i += 317) pieces.push(b.subarray(i, i + 317));
  return Readable.from(pieces) as AsyncIterable<Buffer>;
}

function archive(entries: { h: TarHeader; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const { h, data } of entries) {
    parts.push(encodeHeader({ ...h, size: data?.length ?? 0 }));
    if (data !== undefined) parts.push(data, paddingFor(data.length));
  }
  parts.push(END_OF_ARCHIVE);
  return Buffer.concat(parts);
}

async function readAll(b: Buffer): Promise<{ h: TarHeader; data: Buffer }[]> {
  const out: { h: TarHeader; data: Buffer }[] = [];
  for await (const e of readTar(once(b))) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    out.push({ h: e.header, data: Buffer.concat(parts) });
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "tar-unit-"));
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe("tar codec", () => {
  it("round-trips long names, binary xattrs, big ids, fractional times and every entry type", async () => {
    const longName = `${"d".repeat(120)}/${"f".repeat(150)}`;
    const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const bin = Buffer.from([0xff, 0x00, 0x80, 0x0a, 0x3d, 0x20]);
    const file: TarHeader = {
      ...emptyHeader(longName, "file"),
      mode: 0o4755,
      uid: 3_000_000,
      gid: 70_000,
      mtime: 1_700_000_000.125,
      xattrs: new Map([
        ["security.capability", cap],
        ["user.bin", bin],
      ]),
    };
    const entries = [
      { h: { ...emptyHeader("dir", "dir"), mode: 0o1777, mtime: 1_700_000_000 } },
      { h: file, data: Buffer.from("hello\n".repeat(200)) },
      { h: { ...emptyHeader("dir/link", "link"), linkname: longName } },
      { h: { ...emptyHeader("dir/sym", "symlink"), linkname: "../".repeat(40) + "target" } },
      { h: { ...emptyHeader("dev/null", "char"), devmajor: 1, devminor: 3 } },
      { h: { ...emptyHeader("dev/loop", "block"), devmajor: 7, devminor: 0 } },
      { h: emptyHeader("fifo", "fifo") },
      { h: emptyHeader("caf\xc3\xa9-\xff.txt", "file"), data: Buffer.alloc(0) },
    ];
    const got = await readAll(archive(entries));
    expect(got.map((e) => e.h.name)).toEqual(entries.map((e) => (e.h.type === "dir" ? `${e.h.name}/` : e.h.name)));
    const f = got[1];
    expect(f?.h.mode).toBe(0o4755);
    expect(f?.h.uid).toBe(3_000_000);
    expect(f?.h.gid).toBe(70_000);
    expect(f?.h.mtime).toBe(1_700_000_000.125);
    expect(f?.h.xattrs.get("security.capability")?.equals(cap)).toBe(true);
    expect(f?.h.xattrs.get("user.bin")?.equals(bin)).toBe(true);
    expect(f?.data.toString()).toBe("hello\n".repeat(200));
    expect(got[2]?.h.linkname).toBe(longName);
    expect(got[3]?.h.linkname).toBe("../".repeat(40) + "target");
    expect(got[4]?.h).toMatchObject({ type: "char", devmajor: 1, devminor: 3 });
    expect(got[5]?.h).toMatchObject({ type: "block", devmajor: 7, devminor: 0 });
    expect(got[6]?.h.type).toBe("fifo");
    expect(got[0]?.h.mode).toBe(0o1777);
  });

  it("writes archives GNU tar reads back with the same names and xattrs", () => {
    const bin = Buffer.from([0xff, 0x00, 0x01]);
    const data = Buffer.from("x");
    const tarBytes = archive([
      { h: emptyHeader("a", "dir") },
      { h: { ...emptyHeader(`a/${"n".repeat(130)}`, "file"), xattrs: new Map([["user.k", bin]]) }, data },
    ]);
    const listing = execFileSync("tar", ["-tvv", "--xattrs", "--xattrs-include=*", "-f", "-"], { input: tarBytes, encoding: "utf8" });
    expect(listing).toContain(`a/${"n".repeat(130)}`);
    expect(listing).toMatch(/x: 3 user\.k/);
  });

  it("reads GNU tar's POSIX archives (PAX records, hard links, symlinks)", async () => {
    const d = join(tmp, "src");
    mkdirSync(join(d, "sub"), { recursive: true });
    writeFileSync(join(d, "sub", "f"), "content");
    linkSync(join(d, "sub", "f"), join(d, "hl"));
    symlinkSync("sub/f", join(d, "sl"));
    const out = execFileSync("tar", ["--create", "--file=-", "--format=posix", "--sort=name", "--numeric-owner", "-C", d, "."]);
    const got = await readAll(out);
    const byName = new Map(got.map((e) => [e.h.name, e]));
    // sorted by name: ./hl comes first and carries the data, ./sub/f links to it
    expect(byName.get("./hl")?.data.toString()).toBe("content");
    expect(byName.get("./sub/f")?.h).toMatchObject({ type: "link", linkname: "./hl" });
    expect(byName.get("./sl")?.h).toMatchObject({ type: "symlink", linkname: "sub/f" });
    expect(byName.get("./sub/")?.h.type).toBe("dir");
  });

  it("rejects a corrupt header instead of misreading it", async () => {
    const b = archive([{ h: emptyHeader("x", "file"), data: Buffer.from("abc") }]);
    b[10] = 0x41;
    await expect(readAll(b)).rejects.toThrow(/checksum/);
  });

  it("skips whatever a consumer leaves unread", async () => {
    const b = archive([
      { h: emptyHeader("one", "file"), data: Buffer.alloc(5000, 1) },
      { h: emptyHeader("two", "file"), data: Buffer.from("2") },
    ]);
    const names: string[] = [];
    for await (const e of readTar(once(b))) names.push(e.header.name);
    expect(names).toEqual(["one", "two"]);
  });
});
