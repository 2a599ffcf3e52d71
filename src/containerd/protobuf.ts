// Protocol Buffers (proto3) encoding for the containerd messages the committer exchanges, driven by
// the schema that scripts/generate.ts derives from ./proto (schema.generated.ts). Only what those
// files use is supported: strings, bytes, bool, 32/64-bit varints, enums, nested and repeated messages,
// repeated strings and map<string, …>; the generator refuses anything else. Decoding follows the
// conventions the rest of the code reads: field names as in the .proto files, 64-bit integers as
// numbers, enums as their names, absent fields as their defaults (messages as null), unknown fields
// skipped.

export type ScalarType = "string" | "bytes" | "bool" | "int32" | "uint32" | "int64" | "uint64";

export interface FieldSchema {
  readonly name: string;
  readonly id: number;
  /** `map` fields have string keys; `type` is their value's type. */
  readonly kind: "scalar" | "enum" | "message" | "map";
  /** A ScalarType, or the full name of an enum or message. */
  readonly type: string;
  /** For maps: whether the value is a scalar, an enum or a message. */
  readonly valueKind?: "scalar" | "enum" | "message";
  readonly repeated?: boolean;
}

export interface ProtoSchema {
  readonly messages: Readonly<Record<string, readonly FieldSchema[]>>;
  /** Enum values as [name, number] pairs, in declaration order (the first is the default). */
  readonly enums: Readonly<Record<string, readonly (readonly [string, number])[]>>;
}

export class ProtobufError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtobufError";
  }
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

function wireType(kind: FieldSchema["kind"], type: string): number {
  if (kind === "message" || kind === "map") return WIRE_BYTES;
  if (kind === "enum") return WIRE_VARINT;
  return type === "string" || type === "bytes" ? WIRE_BYTES : WIRE_VARINT;
}

// ---- writing -----------------------------------------------------------------------------------

class Writer {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.room(10);
    if (v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
      while (v > 0x7f) {
        this.buf[this.pos++] = (v % 0x80) | 0x80;
        v = Math.floor(v / 0x80);
      }
      this.buf[this.pos++] = v;
      return;
    }
    // negative (two's complement over 64 bits, as proto3 writes int32 and int64) or beyond 2^53
    let b = BigInt.asUintN(64, BigInt(Math.trunc(v)));
    while (b > 0x7fn) {
      this.buf[this.pos++] = Number(b & 0x7fn) | 0x80;
      b >>= 7n;
    }
    this.buf[this.pos++] = Number(b);
  }

  tag(id: number, wire: number): void {
    this.varint(id * 8 + wire);
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.room(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  string(s: string): void {
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos);
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

function describe(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : typeof v;
}

function writeScalar(w: Writer, type: string, v: unknown, where: string): void {
  switch (type) {
    case "string":
      if (typeof v !== "string") throw new ProtobufError(`${where}: expected a string, got ${describe(v)}`);
      w.string(v);
      return;
    case "bytes":
      if (!(v instanceof Uint8Array)) throw new ProtobufError(`${where}: expected bytes, got ${describe(v)}`);
      w.bytes(v);
      return;
    case "bool":
      if (typeof v !== "boolean") throw new ProtobufError(`${where}: expected a boolean, got ${describe(v)}`);
      w.varint(v ? 1 : 0);
      return;
    default:
      if (typeof v !== "number" || !Number.isInteger(v)) throw new ProtobufError(`${where}: expected an integer, got ${describe(v)}`);
      w.varint(type === "uint32" ? v >>> 0 : v);
  }
}

function enumNumber(schema: ProtoSchema, type: string, v: unknown, where: string): number {
  const values = schema.enums[type] ?? [];
  if (typeof v === "number") return v;
  const hit = values.find(([name]) => name === v);
  if (hit === undefined) throw new ProtobufError(`${where}: ${describe(v)} is not a value of ${type}`);
  return hit[1];
}

function writeValue(w: Writer, schema: ProtoSchema, kind: "scalar" | "enum" | "message", type: string, v: unknown, where: string): void {
  if (kind === "scalar") writeScalar(w, type, v, where);
  else if (kind === "enum") w.varint(enumNumber(schema, type, v, where));
  else w.bytes(encodeMessage(schema, type, v, where));
}

function encodeMessage(schema: ProtoSchema, type: string, value: unknown, where: string): Buffer {
  const fields = schema.messages[type];
  if (fields === undefined) throw new ProtobufError(`no message type ${type} in the schema`);
  if (typeof value !== "object" || value === null) throw new ProtobufError(`${where}: expected an object for ${type}, got ${describe(value)}`);
  const obj = value as Record<string, unknown>;
  const w = new Writer();
  for (const f of fields) {
    const v = obj[f.name];
    if (v === undefined || v === null) continue;
    const at = `${where}.${f.name}`;
    if (f.kind === "map") {
      if (typeof v !== "object") throw new ProtobufError(`${at}: expected an object, got ${describe(v)}`);
      const valueKind = f.valueKind ?? "scalar";
      for (const [k, mv] of Object.entries(v as Record<string, unknown>)) {
        const entry = new Writer();
        entry.tag(1, WIRE_BYTES);
        entry.string(k);
        entry.tag(2, wireType(valueKind, f.type));
        writeValue(entry, schema, valueKind, f.type, mv, `${at}[${JSON.stringify(k)}]`);
        w.tag(f.id, WIRE_BYTES);
        w.bytes(entry.finish());
      }
      continue;
    }
    const kind = f.kind;
    const wire = wireType(kind, f.type);
    if (f.repeated === true) {
      if (!Array.isArray(v)) throw new ProtobufError(`${at}: expected a list, got ${describe(v)}`);
      for (const [i, item] of (v as unknown[]).entries()) {
        w.tag(f.id, wire);
        writeValue(w, schema, kind, f.type, item, `${at}[${i}]`);
      }
      continue;
    }
    w.tag(f.id, wire);
    writeValue(w, schema, kind, f.type, v, at);
  }
  return w.finish();
}

/** Encodes `value` as message `type` (its fields by their .proto names; absent ones are not written). */
export function encode(schema: ProtoSchema, type: string, value: unknown): Buffer {
  return encodeMessage(schema, type, value, type.slice(type.lastIndexOf(".") + 1));
}

// ---- reading -----------------------------------------------------------------------------------

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint as a number when it fits in 53 bits, else as a bigint. */
  varint(): number | bigint {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new ProtobufError("truncated varint");
      const b = this.buf[this.pos++] ?? 0;
      if (i < 7) {
        result += (b & 0x7f) * mul;
        mul *= 0x80;
        if (b < 0x80) return result;
      } else {
        // beyond 49 bits: finish exactly
        let big = BigInt(result);
        let shift = 49n;
        let byte = b;
        for (;;) {
          big |= BigInt(byte & 0x7f) << shift;
          if (byte < 0x80) return big;
          shift += 7n;
          if (shift > 63n || this.pos >= this.end) throw new ProtobufError("malformed varint");
          byte = this.buf[this.pos++] ?? 0;
        }
      }
    }
    throw new ProtobufError("malformed varint");
  }

  length(): number {
    const n = this.varint();
    if (typeof n !== "number" || this.pos + n > this.end) throw new ProtobufError("length-delimited field runs past the end of its message");
    return n;
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_FIXED64) this.pos += 8;
    else if (wire === WIRE_BYTES) {
      const n = this.length(); // first: it moves pos past the length itself
      this.pos += n;
    }
    else if (wire === WIRE_FIXED32) this.pos += 4;
    else throw new ProtobufError(`unsupported wire type ${wire}`);
    if (this.pos > this.end) throw new ProtobufError("field runs past the end of its message");
  }
}

function integer(v: number | bigint, type: string): number {
  if (typeof v === "number") {
    if (type === "int32") return v | 0;
    if (type === "uint32") return v >>> 0;
    return v;
  }
  if (type === "int32") return Number(BigInt.asIntN(32, v));
  if (type === "uint32") return Number(BigInt.asUintN(32, v));
  if (type === "int64") return Number(BigInt.asIntN(64, v));
  return Number(BigInt.asUintN(64, v));
}

function defaultScalar(type: string): unknown {
  if (type === "string") return "";
  if (type === "bytes") return Buffer.alloc(0);
  if (type === "bool") return false;
  return 0;
}

function enumName(schema: ProtoSchema, type: string, n: number): string | number {
  return schema.enums[type]?.find(([, v]) => v === n)?.[0] ?? n;
}

function defaultValue(schema: ProtoSchema, kind: "scalar" | "enum" | "message", type: string): unknown {
  if (kind === "scalar") return defaultScalar(type);
  if (kind === "enum") return schema.enums[type]?.[0]?.[0] ?? 0;
  return null;
}

function readValue(r: Reader, schema: ProtoSchema, kind: "scalar" | "enum" | "message", type: string, wire: number): unknown {
  const expected = wireType(kind, type);
  if (wire !== expected) throw new ProtobufError(`wire type ${wire} for a field of type ${type}`);
  if (kind === "message") {
    const n = r.length();
    const v = decodeMessage(schema, type, r.buf, r.pos, r.pos + n);
    r.pos += n;
    return v;
  }
  if (kind === "enum") return enumName(schema, type, integer(r.varint(), "int32"));
  switch (type) {
    case "string": {
      const n = r.length();
      const s = r.buf.toString("utf8", r.pos, r.pos + n);
      r.pos += n;
      return s;
    }
    case "bytes": {
      const n = r.length();
      const b = r.buf.subarray(r.pos, r.pos + n); // a view: the message's buffer is never reused
      r.pos += n;
      return b;
    }
    case "bool":
      return r.varint() !== 0;
    default:
      return integer(r.varint(), type);
  }
}

function decodeMessage(schema: ProtoSchema, type: string, buf: Buffer, start: number, end: number): Record<string, unknown> {
  const fields = schema.messages[type];
  if (fields === undefined) throw new ProtobufError(`no message type ${type} in the schema`);
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    out[f.name] = f.kind === "map" ? {} : f.repeated === true ? [] : defaultValue(schema, f.kind, f.type);
  }
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const key = r.varint();
    if (typeof key !== "number") throw new ProtobufError("malformed field key");
    const id = Math.floor(key / 8);
    const wire = key % 8;
    const f = fields.find((x) => x.id === id);
    if (f === undefined) {
      r.skip(wire);
      continue;
    }
    if (f.kind === "map") {
      if (wire !== WIRE_BYTES) throw new ProtobufError(`wire type ${wire} for map field ${f.name}`);
      const n = r.length();
      const entry = new Reader(buf, r.pos, r.pos + n);
      r.pos += n;
      const valueKind = f.valueKind ?? "scalar";
      let k = "";
      let v = defaultValue(schema, valueKind, f.type);
      while (entry.pos < entry.end) {
        const ek = entry.varint();
        if (typeof ek !== "number") throw new ProtobufError("malformed map entry");
        if (ek === (1 << 3) + WIRE_BYTES) k = readValue(entry, schema, "scalar", "string", WIRE_BYTES) as string;
        else if (Math.floor(ek / 8) === 2) v = readValue(entry, schema, valueKind, f.type, ek % 8);
        else entry.skip(ek % 8);
      }
      // an own property whatever the key: a label named __proto__ must not become the map's prototype
      Object.defineProperty(out[f.name], k, { value: v, enumerable: true, writable: true, configurable: true });
      continue;
    }
    const v = readValue(r, schema, f.kind, f.type, wire);
    if (f.repeated === true) (out[f.name] as unknown[]).push(v);
    else out[f.name] = v;
  }
  if (r.pos !== end) throw new ProtobufError("field runs past the end of its message");
  return out;
}

/** Decodes message `type` from `buf`. */
export function decode(schema: ProtoSchema, type: string, buf: Buffer): Record<string, unknown> {
  return decodeMessage(schema, type, buf, 0, buf.length);
}
