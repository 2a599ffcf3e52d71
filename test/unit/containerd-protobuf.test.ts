// Our protobuf codec against protobufjs (the reference implementation, loaded from the same .proto
// files): for every message of containerd's schema, random values encode to bytes protobufjs decodes
// to the same values, and protobufjs's bytes decode with ours to the same values. Plus what a server
// or a bug may send: unknown fields, negative and 64-bit integers, truncated and malformed input.
import fc from "fast-check";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";
import { afterAll, describe, expect, it } from "vitest";
import { containerdSchemaTs, loadProtoRoot } from "../../scripts/containerd-schema.js";
import { decode, encode, ProtobufError, type FieldSchema, type ProtoSchema } from "../../src/containerd/protobuf.js";
import { CONTAINERD_SCHEMA } from "../../src/containerd/schema.generated.js";

const PROTO_DIR = fileURLToPath(new URL("../../src/containerd/proto/", import.meta.url));

const ROOT = loadProtoRoot(PROTO_DIR);
const TO_OBJECT = { longs: Number, enums: String, bytes: Buffer, defaults: true } as const;

/** What protobufjs decodes, in our conventions (its defaults leave absent messages undefined; ours null). */
function theirs(type: string, bytes: Uint8Array): unknown {
  const t = ROOT.lookupType(type);
  return normalise(CONTAINERD_SCHEMA, type, t.toObject(t.decode(bytes), TO_OBJECT));
}

function normalise(schema: ProtoSchema, type: string, obj: unknown): Record<string, unknown> {
  const o = obj as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of schema.messages[type] ?? []) {
    const v = o[f.name];
    if (f.kind === "message" && f.repeated !== true) out[f.name] = v === undefined || v === null ? null : normalise(schema, f.type, v);
    else if (f.kind === "message") out[f.name] = (v as unknown[]).map((x) => normalise(schema, f.type, x));
    else if (f.kind === "map" && f.valueKind === "message") out[f.name] = Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, normalise(schema, f.type, x)]));
    else out[f.name] = Buffer.isBuffer(v) ? Buffer.from(v) : v;
  }
  return out;
}

const safeInt64 = fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });

function scalar(type: string): fc.Arbitrary<unknown> {
  switch (type) {
    case "string":
      return fc.string({ unit: "binary", maxLength: 40 });
    case "bytes":
      return fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b));
    case "bool":
      return fc.boolean();
    case "int32":
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
    case "uint32":
      return fc.integer({ min: 0, max: 2 ** 32 - 1 });
    case "int64":
      return fc.oneof(safeInt64, fc.integer({ min: -1000, max: 1000 }));
    default:
      return fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
  }
}

function value(schema: ProtoSchema, kind: "scalar" | "enum" | "message", type: string, depth: number): fc.Arbitrary<unknown> {
  if (kind === "scalar") return scalar(type);
  if (kind === "enum") return fc.constantFrom(...(schema.enums[type] ?? []).map(([n]) => n));
  return message(schema, type, depth + 1);
}

function field(schema: ProtoSchema, f: FieldSchema, depth: number): fc.Arbitrary<unknown> {
  if (f.kind === "map") return fc.dictionary(fc.string({ maxLength: 12 }), value(schema, f.valueKind ?? "scalar", f.type, depth), { maxKeys: 4 });
  const v = value(schema, f.kind, f.type, depth);
  return f.repeated === true ? fc.array(v, { maxLength: 4 }) : v;
}

function message(schema: ProtoSchema, type: string, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields = schema.messages[type] ?? [];
  const record: Record<string, fc.Arbitrary<unknown>> = {};
  for (const f of fields) record[f.name] = depth > 3 && f.kind === "message" ? fc.constant(undefined) : field(schema, f, depth);
  return fc.record(record, { requiredKeys: [] });
}

const TYPES = Object.keys(CONTAINERD_SCHEMA.messages);

describe("containerd protobuf codec", () => {
  it("covers every message of the generated schema", () => {
    expect(TYPES.length).toBeGreaterThan(30);
    for (const t of TYPES) expect(() => ROOT.lookupType(t), t).not.toThrow();
  });

  it.each(TYPES)("%s: ours → protobufjs and protobufjs → ours give the same values", (type) => {
    const t = ROOT.lookupType(type);
    fc.assert(
      fc.property(message(CONTAINERD_SCHEMA, type), (v) => {
        const ours = encode(CONTAINERD_SCHEMA, type, v);
        const fromOurs = theirs(type, ours);
        expect(decode(CONTAINERD_SCHEMA, type, ours)).toEqual(fromOurs);
        const ref = Buffer.from(t.encode(t.fromObject(v)).finish());
        expect(decode(CONTAINERD_SCHEMA, type, ref)).toEqual(theirs(type, ref));
      }),
      { numRuns: 60 },
    );
  });

  it("decodes absent fields as defaults: empty strings, zeros, the first enum value, null messages, empty lists and maps", () => {
    expect(decode(CONTAINERD_SCHEMA, "containerd.services.containers.v1.Container", Buffer.alloc(0))).toEqual({
      id: "",
      labels: {},
      image: "",
      runtime: null,
      snapshotter: "",
      snapshot_key: "",
      created_at: null,
    });
    expect(decode(CONTAINERD_SCHEMA, "containerd.v1.types.Process", Buffer.alloc(0))).toMatchObject({ status: "UNKNOWN", pid: 0 });
  });

  it("skips fields it does not know, of every wire type (a newer containerd sends more)", () => {
    const t = new protobuf.Type("Wide")
      .add(new protobuf.Field("id", 1, "string"))
      .add(new protobuf.Field("f64", 20, "fixed64"))
      .add(new protobuf.Field("f32", 21, "fixed32"))
      .add(new protobuf.Field("v", 22, "int64"))
      .add(new protobuf.Field("s", 23, "string"))
      .add(new protobuf.Field("image", 3, "string"));
    new protobuf.Root().add(t);
    const bytes = t.encode(t.fromObject({ id: "c1", f64: 7, f32: 9, v: -5, s: "x".repeat(300), image: "img" })).finish();
    expect(decode(CONTAINERD_SCHEMA, "containerd.services.containers.v1.Container", Buffer.from(bytes))).toMatchObject({ id: "c1", image: "img" });
  });

  it("keeps a map key named __proto__ as an entry, never as the map's prototype (labels are anyone's to set)", () => {
    const type = "containerd.services.containers.v1.Container";
    const labels: Record<string, string> = {};
    Object.defineProperty(labels, "__proto__", { value: "x", enumerable: true });
    const got = decode(CONTAINERD_SCHEMA, type, encode(CONTAINERD_SCHEMA, type, { id: "c", labels })).labels as Record<string, unknown>;
    expect(Object.keys(got)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect(Object.hasOwn(got, "__proto__")).toBe(true);
  });

  it("writes negative and 64-bit integers as protobufjs does", () => {
    const ts = "google.protobuf.Timestamp";
    for (const v of [{ seconds: -1, nanos: -1 }, { seconds: 2 ** 40 + 3, nanos: 2 ** 31 - 1 }, { seconds: Number.MAX_SAFE_INTEGER, nanos: -(2 ** 31) }]) {
      const t = ROOT.lookupType(ts);
      expect(encode(CONTAINERD_SCHEMA, ts, v).toString("hex")).toBe(Buffer.from(t.encode(t.fromObject(v)).finish()).toString("hex"));
      expect(decode(CONTAINERD_SCHEMA, ts, encode(CONTAINERD_SCHEMA, ts, v))).toEqual(v);
    }
  });

  it("refuses truncated and malformed input with a ProtobufError, never a wrong value", () => {
    const type = "containerd.services.images.v1.GetImageResponse";
    const good = encode(CONTAINERD_SCHEMA, type, { image: { name: "n", labels: { a: "b" }, target: { media_type: "m", digest: "d", size: 300, annotations: {} } } });
    for (let cut = 1; cut < good.length; cut++) {
      expect(() => decode(CONTAINERD_SCHEMA, type, good.subarray(0, cut)), `cut at ${cut}`).toThrow(ProtobufError);
    }
    expect(() => decode(CONTAINERD_SCHEMA, type, Buffer.from([0x0b]))).toThrow(/wire type 3/); // a group
    expect(() => decode(CONTAINERD_SCHEMA, type, Buffer.from([0x08, 0x01]))).toThrow(/wire type 0 for a field/); // message field as varint
    expect(() => decode(CONTAINERD_SCHEMA, type, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(ProtobufError);
  });

  it("refuses values of the wrong type, naming the field", () => {
    const type = "containerd.services.leases.v1.CreateRequest";
    expect(() => encode(CONTAINERD_SCHEMA, type, { id: 5 })).toThrow(/CreateRequest\.id: expected a string/);
    expect(() => encode(CONTAINERD_SCHEMA, type, { labels: { a: 1 } })).toThrow(/CreateRequest\.labels\["a"\]: expected a string/);
    expect(() => encode(CONTAINERD_SCHEMA, "containerd.services.leases.v1.ListRequest", { filters: "id==x" })).toThrow(/filters: expected a list/);
    expect(() => encode(CONTAINERD_SCHEMA, "containerd.v1.types.Process", { status: "FROZEN" })).toThrow(/"FROZEN" is not a value of containerd\.v1\.types\.Status/);
  });
});

describe("containerd schema generator", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const protoDir = (body: string): string => {
    const d = mkdtempSync(join(tmpdir(), "proto-"));
    dirs.push(d);
    writeFileSync(join(d, "x.proto"), `syntax = "proto3";\npackage containerd.services.x.v1;\nservice X { rpc Get(Req) returns (Res); }\nmessage Res { string a = 1; }\n${body}\n`);
    return d;
  };

  it("generates the checked-in schema from src/containerd/proto", () => {
    expect(containerdSchemaTs(PROTO_DIR)).toBe(readFileSync(fileURLToPath(new URL("../../src/containerd/schema.generated.ts", import.meta.url)), "utf8"));
  });

  it.each([
    ["double", "message Req { double d = 1; }", /Req\.d: type double is not supported/],
    ["oneof", "message Req { oneof o { string s = 1; int32 i = 2; } }", /Req\.s: oneof is not supported/],
    ["packed repeated numbers", "message Req { repeated int64 n = 1; }", /Req\.n: repeated int64 \(packed\) is not supported/],
    ["non-string map keys", "message Req { map<int32, string> m = 1; }", /Req\.m: map keys of type int32 are not supported/],
  ])("refuses what the codec does not support: %s, naming the field", (_name, body, message) => {
    expect(() => containerdSchemaTs(protoDir(body))).toThrow(message);
  });
});
