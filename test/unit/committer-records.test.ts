// The capture's record files: the frozen walk compares stats as encoded bytes and copies reused
// records as they are, so the byte comparison must agree with sameStat field by field, and a copied
// record must read back as the original.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { RecordReader, RecordWriter, sameStat, type EntryRecord } from "../../src/committer/records.js";
import type { EntryStat, Kind } from "../../src/committer/walk.js";

const dir = mkdtempSync(join(tmpdir(), "records-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;

const KINDS: Kind[] = ["file", "dir", "symlink", "char", "block", "fifo"];
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const whole = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const time = fc.double({ min: 0, max: 4e12, noNaN: true, noDefaultInfinity: true });
const stat: fc.Arbitrary<EntryStat> = fc.record({
  kind: fc.constantFrom(...KINDS),
  dev: whole,
  ino: whole,
  perm: fc.integer({ min: 0, max: 0o7777 }),
  uid: u32,
  gid: u32,
  size: whole,
  blocks: whole,
  nlink: u32,
  rdev: whole,
  mtimeMs: time,
  ctimeMs: time,
});
const FIELDS = ["kind", "dev", "ino", "perm", "uid", "gid", "size", "blocks", "nlink", "rdev", "mtimeMs", "ctimeMs"] as const;

/** `a` with the given fields taken from `b`. */
function mix(a: EntryStat, b: EntryStat, take: readonly (typeof FIELDS)[number][]): EntryStat {
  const out: Record<string, unknown> = { ...a };
  for (const f of take) out[f] = b[f];
  return out as unknown as EntryStat;
}

function written(records: EntryRecord[]): string {
  const path = join(dir, `r${++n}`);
  const w = new RecordWriter(path);
  for (const r of records) w.add(r);
  w.close();
  return path;
}

describe("capture records", () => {
  it("sameStatAs (encoded bytes) agrees with sameStat, and is false for a record without a copy", () => {
    fc.assert(
      // one or two fields changed at a time: each field alone must make a difference (or, blocks, none)
      fc.property(stat, stat, fc.subarray([...FIELDS], { maxLength: 2 }), fc.boolean(), (a, b, take, copied) => {
        const other = mix(a, b, take);
        const r = new RecordReader(written([{ path: "p", stat: a, src: copied ? { tar: 1, offset: 512 } : undefined }]));
        try {
          expect(r.sameStatAs(other)).toBe(copied && sameStat(a, other));
        } finally {
          r.close();
        }
      }),
      { numRuns: 500 },
    );
  });

  it("a record copied with addCurrent reads back as the original, across buffer refills", () => {
    // long paths so that the 1 MiB read buffer is refilled many times mid-stream
    const records: EntryRecord[] = Array.from({ length: 3000 }, (_, i) => ({
      path: `${String(i).padStart(6, "0")}/${"x".repeat(i % 3000)}\u00ff`,
      stat: { kind: "file", dev: 1, ino: i, perm: 0o644, uid: 0, gid: 0, size: i, blocks: 8, nlink: 1, rdev: 0, mtimeMs: i + 0.5, ctimeMs: i + 0.25 },
      src: i % 2 === 0 ? { tar: 0, offset: i * 512 } : undefined,
    }));
    const src = new RecordReader(written(records));
    const copyPath = join(dir, `r${++n}`);
    const w = new RecordWriter(copyPath);
    for (let p = src.path(); p !== undefined; p = src.path()) {
      w.addCurrent(src);
      src.skip();
    }
    w.close();
    src.close();
    const back = new RecordReader(copyPath);
    const got: EntryRecord[] = [];
    for (let r = back.next(); r !== undefined; r = back.next()) got.push(r);
    back.close();
    expect(got).toEqual(records);
  });
});
