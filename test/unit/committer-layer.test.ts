import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { NeedsDiffService, toOciLayer, USER_OVERLAY } from "../../src/committer/layer.js";
import { emptyHeader, type TarEntry, type TarHeader } from "../../src/committer/tar.js";

async function* noData(): AsyncGenerator<Buffer> {
  // empty
}

function entries(hs: TarHeader[]): AsyncIterable<TarEntry> {
  return Readable.from(hs.map((h) => ({ header: h, body: noData() }))) as AsyncIterable<TarEntry>;
}

async function transform(hs: TarHeader[], prefix?: string): Promise<TarHeader[]> {
  const out: TarHeader[] = [];
  for await (const e of toOciLayer(entries(hs), prefix)) out.push(e.header);
  return out;
}

const whiteout = (name: string): TarHeader => ({ ...emptyHeader(name, "char"), mode: 0 });
const x = (k: string, v: string | Buffer): [string, Buffer] => [k, typeof v === "string" ? Buffer.from(v) : v];

describe("overlay upper directory → OCI layer", () => {
  it("turns a whiteout device into .wh.<name> in the same directory and skips the upper dir itself", async () => {
    const out = await transform([emptyHeader("./", "dir"), emptyHeader("./etc/", "dir"), whiteout("./etc/passwd")]);
    expect(out.map((h) => [h.name, h.type, h.size])).toEqual([
      ["etc", "dir", 0],
      ["etc/.wh.passwd", "file", 0],
    ]);
  });

  it("treats a hard link to a whiteout (overlayfs shares one whiteout inode) as a whiteout", async () => {
    const out = await transform([whiteout("./a"), { ...emptyHeader("./d/b", "link"), linkname: "./a" }]);
    expect(out.map((h) => h.name)).toEqual([".wh.a", "d/.wh.b"]);
  });

  it("marks an opaque directory with .wh..wh..opq right after it, before its new children", async () => {
    const out = await transform([
      { ...emptyHeader("./data/replace/", "dir"), xattrs: new Map([x("trusted.overlay.opaque", "y")]) },
      emptyHeader("./data/replace/new", "file"),
    ]);
    expect(out.map((h) => h.name)).toEqual(["data/replace", "data/replace/.wh..wh..opq", "data/replace/new"]);
    expect(out[0]?.xattrs.size).toBe(0);
  });

  it("does not treat opaque=x (a directory with xwhiteouts, kernel 6.7+) as opaque", async () => {
    const out = await transform([{ ...emptyHeader("./d/", "dir"), xattrs: new Map([x("trusted.overlay.opaque", "x")]) }]);
    expect(out.map((h) => h.name)).toEqual(["d"]);
  });

  it("drops overlay and SELinux xattrs and keeps the others byte for byte", async () => {
    const bin = Buffer.from([0, 255, 10, 61]);
    const out = await transform([
      {
        ...emptyHeader("./f", "file"),
        xattrs: new Map([
          x("trusted.overlay.origin", bin),
          x("trusted.overlay.impure", "y"),
          x("security.selinux", "system_u:object_r:container_file_t:s0"),
          x("user.bin", bin),
          x("security.capability", bin),
          x("trusted.other", "kept"),
        ]),
      },
    ]);
    expect([...(out[0]?.xattrs.keys() ?? [])].sort()).toEqual(["security.capability", "trusted.other", "user.bin"]);
    expect(out[0]?.xattrs.get("user.bin")?.equals(bin)).toBe(true);
  });

  it("uses user.overlay.* on userxattr mounts", async () => {
    const out = await transform(
      [{ ...emptyHeader("./d/", "dir"), xattrs: new Map([x("user.overlay.opaque", "y"), x("trusted.overlay.opaque", "y")]) }],
      USER_OVERLAY,
    );
    expect(out.map((h) => h.name)).toEqual(["d", "d/.wh..wh..opq"]);
    expect([...(out[0]?.xattrs.keys() ?? [])]).toEqual(["trusted.overlay.opaque"]);
  });

  it("keeps hard links and symlinks with their targets (hard links relative to the layer root)", async () => {
    const out = await transform([
      emptyHeader("./root/hello", "file"),
      { ...emptyHeader("./root/hl", "link"), linkname: "./root/hello" },
      { ...emptyHeader("./root/sl", "symlink"), linkname: "./hello" },
    ]);
    expect(out.map((h) => [h.name, h.type, h.linkname])).toEqual([
      ["root/hello", "file", ""],
      ["root/hl", "link", "root/hello"],
      ["root/sl", "symlink", "./hello"],
    ]);
  });

  it("keeps real device nodes (not 0:0)", async () => {
    const out = await transform([{ ...emptyHeader("./dev/null", "char"), devmajor: 1, devminor: 3 }]);
    expect(out[0]).toMatchObject({ name: "dev/null", type: "char", devmajor: 1, devminor: 3 });
  });

  it.each(["redirect", "metacopy"])("gives up with NeedsDiffService when overlay %s is in use", async (what) => {
    await expect(transform([{ ...emptyHeader("./d/", "dir"), xattrs: new Map([x(`trusted.overlay.${what}`, "/x")]) }])).rejects.toBeInstanceOf(
      NeedsDiffService,
    );
  });
});
