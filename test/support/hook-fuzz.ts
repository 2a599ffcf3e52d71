// Generators for fuzzing the hook server: requests derived from hooks/schema/hooks.generated.json
// (the schema the server validates with), the recorded fixtures, and mutations of both — wrong types,
// huge strings, deep nesting, unicode, missing fields, duplicated keys, truncated JSON, wrong content
// types. Plus a keep-alive HTTP poster that returns raw status and body.
import { readdirSync, readFileSync } from "node:fs";
import { Agent, request as httpRequest } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";

export type Hook = "sync" | "finalize" | "customize";

type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: unknown[];
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  minimum?: number;
};

const root = fileURLToPath(new URL("../..", import.meta.url));
const schema = JSON.parse(readFileSync(join(root, "hooks/schema/hooks.generated.json"), "utf8")) as {
  definitions: Record<string, JsonSchema>;
};

// ---- strings that make the reconcile core do something --------------------------------------------

const DIGEST = fc.stringMatching(/^[0-9a-f]{64}$/).map((h) => `sha256:${h}`);
const NAME = fc.constantFrom("snap1", "sbx", "sbx-0", "p1", "node-a", "sandbox", "sidecar", "snap1-commit", "snap1-unpause", "snap1-commit-x7k2p", "osb-snap-0123456789abcdef0123456789abcdef");
const TIME = fc
  .integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2100, 0, 1) })
  .map((ms) => new Date(ms).toISOString().replace(/\.\d+Z$/, "Z"));
const COMMIT_RESULT = fc.oneof(
  fc
    .record({ name: NAME, image: fc.constant("registry.example.com/snapshots/sbx-sandbox:snap-gen3"), digest: DIGEST, sizeBytes: fc.nat() })
    .map((c) => JSON.stringify({ containers: [c], freezeMillis: 12 })),
  fc.string().map((error) => JSON.stringify({ error })),
  fc.constantFrom("{", "null", "[]", '{"containers":"x"}', '{"containers":[{"name":1}]}', '{"freezeMillis":-1}'),
);
/** Unicode that breaks naive code: lone surrogates, RTL marks, NUL, combining marks, astral emoji. */
export const NASTY_UNICODE = fc.constantFrom(
  "\uD800",
  "\uDFFF",
  "a\u0000b",
  "\u202Eevil",
  "e\u0301\u0301\u0301",
  "🦓".repeat(50),
  "\uFEFF",
  "\u2028\u2029",
  "𝔰𝔫𝔞𝔭",
  "../../etc/passwd",
  "%00%2e%2e",
  "${jndi:ldap://127.0.0.1/x}",
  "__proto__",
  "constructor",
);
const ANY_STRING = fc.oneof(
  { weight: 4, arbitrary: NAME },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: NASTY_UNICODE },
  { weight: 1, arbitrary: DIGEST },
  { weight: 1, arbitrary: TIME },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "registry.example.com/snapshots/sbx-sandbox:snap-gen3",
      "registry.example.com/snapshots/sbx-sandbox@sha256:" + "a".repeat(64),
      "registry.example.com/snapshots/UPPER:bad tag",
      "localhost:5000/x:y",
      ":",
      "",
    ),
  },
);

/** Property-specific values so generated requests reach deep into the core (phases, results). */
function special(prop: string): fc.Arbitrary<unknown> | undefined {
  switch (prop) {
    case "message":
      return fc.oneof(ANY_STRING, COMMIT_RESULT);
    case "imageDigest":
      return DIGEST;
    case "kind":
      return fc.constantFrom("Job", "Pod", "BatchSandbox", "SandboxSnapshot", "CompositeController");
    case "apiVersion":
      return fc.constantFrom("batch/v1", "v1", "sandbox.opensandbox.io/v1alpha1", "metacontroller.k8s.io/v1alpha1");
    case "type":
      return fc.constantFrom("Complete", "Failed", "Ready", "ContainersResumed", "SuccessCriteriaMet", "FailureTarget", "Suspended");
    case "status":
      return undefined;
    case "phase":
      return undefined;
    default:
      return undefined;
  }
}

const LABELS = fc.dictionary(
  fc.constantFrom("job-name", "batch.kubernetes.io/job-name", "batch-sandbox.sandbox.opensandbox.io/name", "sandbox.opensandbox.io/sandbox-snapshot-name", "x"),
  NAME,
  { maxKeys: 3 },
);
const ANNOTATIONS = fc.dictionary(
  fc.constantFrom("sandbox.opensandbox.io/alloc-status", "other"),
  fc.oneof(
    fc.array(NAME, { maxLength: 3 }).map((pods) => JSON.stringify({ pods })),
    fc.constantFrom("{", "null", '{"pods":"x"}', '{"pods":[1,2]}', "[]"),
    ANY_STRING,
  ),
  { maxKeys: 2 },
);
const TYPE_KEY = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom("Job.batch/v1", "Pod.v1", "BatchSandbox.sandbox.opensandbox.io/v1alpha1") },
  { weight: 1, arbitrary: ANY_STRING },
);
const NAME_KEY = fc.oneof(NAME, NAME.map((n) => `sandboxes/${n}`), ANY_STRING);

/** A small arbitrary JSON value (for `type: object` without properties, e.g. a Job's spec). */
const LOOSE = fc.jsonValue({ maxDepth: 3 }).map((v) => (typeof v === "object" && v !== null && !Array.isArray(v) ? v : { v }));

const cache = new Map<string, fc.Arbitrary<unknown>>();

function fromRef(ref: string, depth: number): fc.Arbitrary<unknown> {
  const name = ref.replace("#/definitions/", "");
  const key = `${name}@${depth}`;
  let arb = cache.get(key);
  if (arb === undefined) {
    const def = schema.definitions[name];
    if (def === undefined) throw new Error(`no schema definition ${name}`);
    arb = fromSchema(def, depth, name);
    cache.set(key, arb);
  }
  return arb;
}

function fromSchema(s: JsonSchema, depth: number, prop = ""): fc.Arbitrary<unknown> {
  if (s.$ref !== undefined) return fromRef(s.$ref, depth);
  if (s.enum !== undefined) return fc.constantFrom(...s.enum);
  const sp = special(prop);
  if (sp !== undefined && (s.type === "string" || s.type === undefined)) return sp;
  if (prop === "labels") return LABELS;
  if (prop === "annotations") return ANNOTATIONS;
  const types = Array.isArray(s.type) ? s.type : [s.type ?? "object"];
  return fc.oneof(...types.map((t) => fromType(t, s, depth)));
}

function fromType(t: string, s: JsonSchema, depth: number): fc.Arbitrary<unknown> {
  switch (t) {
    case "null":
      return fc.constant(null);
    case "boolean":
      return fc.boolean();
    case "integer":
      return fc.oneof(fc.integer({ min: s.minimum ?? -5, max: 1000 }), fc.constantFrom(0, 1, 3, Number.MAX_SAFE_INTEGER));
    case "number":
      return fc.oneof(fc.integer({ min: s.minimum ?? 0, max: 1000 }), fc.double({ min: s.minimum ?? -1e9, max: 1e9, noNaN: true }));
    case "string": {
      if (s.format === "date-time") return TIME;
      if (s.pattern !== undefined) {
        const max = s.maxLength ?? 253;
        return fc.oneof(NAME, fc.stringMatching(new RegExp(s.pattern))).filter((v) => v.length >= (s.minLength ?? 0) && v.length <= max);
      }
      return ANY_STRING.filter((v) => v.length <= (s.maxLength ?? Infinity));
    }
    case "array": {
      const items = s.items ? fromSchema(s.items, depth + 1) : LOOSE;
      return fc.array(items, { maxLength: Math.min(s.maxItems ?? 4, 4) });
    }
    default: {
      // object
      if (depth > 6) return fc.constant({});
      const props = s.properties ?? {};
      const names = Object.keys(props);
      if (names.length === 0) {
        if (typeof s.additionalProperties === "object") {
          const valueKey = s.additionalProperties.$ref === undefined ? NAME_KEY : NAME_KEY;
          const inner = fromSchema(s.additionalProperties, depth + 1);
          // ChildMap/RelatedMap: type key → name key → object
          const isMapOfMaps = s.additionalProperties.type === "object" && typeof s.additionalProperties.additionalProperties === "object";
          return fc.dictionary(isMapOfMaps ? TYPE_KEY : valueKey, inner, { maxKeys: 3 });
        }
        return LOOSE;
      }
      const required = new Set(s.required ?? []);
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const n of names) rec[n] = fromSchema(props[n] as JsonSchema, depth + 1, n);
      return fc.record(rec, { requiredKeys: names.filter((n) => required.has(n)) });
    }
  }
}

/** Requests generated from the hook schema's definition (SyncRequest or CustomizeRequest). */
export function schemaRequest(definition: "SyncRequest" | "CustomizeRequest"): fc.Arbitrary<unknown> {
  return fromRef(`#/definitions/${definition}`, 0);
}

/** The recorded hook fixtures' requests (hooks/fixtures/**), by hook. */
export function fixtureRequests(): Record<Hook, unknown[]> {
  const out: Record<Hook, unknown[]> = { sync: [], finalize: [], customize: [] };
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".json")) {
        const f = JSON.parse(readFileSync(p, "utf8")) as { hook?: string; request?: unknown };
        const hook = f.hook ?? (e.name.startsWith("customize") ? "customize" : e.name.startsWith("finalize") ? "finalize" : "sync");
        if ((hook === "sync" || hook === "finalize" || hook === "customize") && f.request !== undefined) out[hook].push(f.request);
      }
    }
  };
  walk(join(root, "hooks/fixtures"));
  return out;
}

// ---- mutations ------------------------------------------------------------------------------------

/** Every JSON pointer (as key arrays) of a value, objects and arrays included. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = [], depth = 0): (string | number)[][] {
  out.push(prefix);
  if (depth > 12 || typeof v !== "object" || v === null) return out;
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x] as const) : Object.entries(v);
  for (const [k, x] of entries) paths(x, [...prefix, k], out, depth + 1);
  return out;
}

function deepNest(depth: number, kind: "array" | "object"): unknown {
  let v: unknown = "bottom";
  for (let i = 0; i < depth; i++) v = kind === "array" ? [v] : { a: v };
  return v;
}

const REPLACEMENT = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -0, "", [], {}, [null], { "": "" }),
  fc.integer(),
  fc.double(),
  ANY_STRING,
  NASTY_UNICODE,
  fc.integer({ min: 1_000, max: 300_000 }).map((n) => "x".repeat(n)),
  fc.integer({ min: 10, max: 800 }).map((n) => deepNest(n, "array")),
  fc.integer({ min: 10, max: 800 }).map((n) => deepNest(n, "object")),
  fc.array(fc.constant({ apiVersion: "v1", kind: "Pod", metadata: { name: "sbx-0" } }), { minLength: 50, maxLength: 2_000 }),
  fc.jsonValue({ maxDepth: 4 }),
);

type Mutation =
  | { op: "replace"; at: number; value: unknown }
  | { op: "delete"; at: number }
  | { op: "proto"; at: number; key: "__proto__" | "constructor" | "prototype" };

const MUTATION: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant("replace" as const), at: fc.nat(), value: REPLACEMENT }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("delete" as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("proto" as const), at: fc.nat(), key: fc.constantFrom("__proto__" as const, "constructor" as const, "prototype" as const) }) },
);

function clone(v: unknown): unknown {
  return v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as unknown);
}

/** Applies mutations at positions picked (modulo) among the value's paths; returns a new value. */
export function applyMutations(value: unknown, ms: readonly Mutation[]): unknown {
  let v = clone(value);
  for (const m of ms) {
    const all = paths(v);
    const path = all[m.at % all.length] ?? [];
    if (path.length === 0) {
      if (m.op === "replace") v = clone(m.value);
      continue;
    }
    let parent = v as Record<string | number, unknown>;
    for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
    const last = path[path.length - 1] as string | number;
    if (m.op === "replace") parent[last] = clone(m.value);
    else if (m.op === "delete") {
      if (Array.isArray(parent)) parent.splice(last as number, 1);
      else Reflect.deleteProperty(parent, last);
    } else if (typeof parent[last] === "object" && parent[last] !== null) {
      // own property named __proto__ (as JSON.parse would create it)
      Object.defineProperty(parent[last], m.key, { value: { polluted: "yes", phase: "Succeed" }, enumerable: true, configurable: true, writable: true });
    }
  }
  return v;
}

// ---- raw bodies -----------------------------------------------------------------------------------

export interface RawRequest {
  readonly hook: Hook;
  readonly body: Buffer;
  readonly headers: Record<string, string>;
  /** How it was made, for failure messages. */
  readonly how: string;
}

type RawTwist =
  | { kind: "none" }
  | { kind: "truncate"; at: number }
  | { kind: "duplicate-key"; at: number; value: unknown }
  | { kind: "garbage"; bytes: Uint8Array }
  | { kind: "bad-utf8" }
  | { kind: "bom" }
  | { kind: "whitespace"; n: number }
  /** The body wrapped textually in n levels of arrays or objects (deeper than any value could be built). */
  | { kind: "deep"; n: number; as: "array" | "object" };

const RAW_TWIST: fc.Arbitrary<RawTwist> = fc.oneof(
  { weight: 6, arbitrary: fc.constant({ kind: "none" as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("duplicate-key" as const), at: fc.nat(), value: REPLACEMENT.filter((x) => typeof x !== "string" || x.length < 10_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("garbage" as const), bytes: fc.uint8Array({ maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "bad-utf8" as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: "bom" as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("whitespace" as const), n: fc.integer({ min: 1, max: 10_000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deep" as const), n: fc.integer({ min: 1_000, max: 200_000 }), as: fc.constantFrom("array" as const, "object" as const) }) },
);

const CONTENT_TYPE = fc.oneof(
  { weight: 8, arbitrary: fc.constant("application/json") },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "application/json; charset=utf-16",
      "application/json; charset=bogus",
      "application/octet-stream",
      "application/merge-patch+json",
      "image/png",
      "application/json;;;=",
    ),
  },
);
const EXTRA_HEADERS = fc.oneof(
  { weight: 10, arbitrary: fc.constant({}) },
  {
    weight: 1,
    arbitrary: fc.constantFrom<Record<string, string>>(
      { "content-encoding": "gzip" },
      { "content-encoding": "deflate" },
      { "content-encoding": "br" },
      { "content-encoding": "identity" },
      { "content-encoding": "x-unknown" },
      { "x-request-id": "../../etc" },
      { "x-request-id": "a".repeat(300) },
    ),
  },
);

/** Inserts `"<key>": <value>,` right after the opening brace of the n-th object in the text. */
function duplicateKey(text: string, at: number, value: unknown): string {
  const opens: number[] = [];
  const keys: string[] = [];
  // find `{"key":` occurrences (object starts with their first key)
  const re = /\{"((?:[^"\\]|\\.)*)":/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    opens.push(m.index);
    keys.push(m[1] ?? "");
  }
  if (opens.length === 0) return text;
  const i = at % opens.length;
  const pos = opens[i] as number;
  // the duplicate comes last in the object, which JSON.parse lets win: insert after the first key's value is hard
  // to find by regex, so put the duplicate first and the original after it (the original then wins) — and
  // also exercise "later wins" by appending the duplicate at the end of the top-level object.
  const json = (JSON.stringify(value) as string | undefined) ?? "null";
  const dup = `"${keys[i] ?? ""}":${json},`;
  let out = `${text.slice(0, pos + 1)}${dup}${text.slice(pos + 1)}`;
  if (i === 0 && out.endsWith("}")) out = `${out.slice(0, -1)},"${keys[0] ?? ""}":${json}}`;
  return out;
}

function twist(text: string, t: RawTwist): Buffer {
  switch (t.kind) {
    case "none":
      return Buffer.from(text);
    case "truncate":
      return Buffer.from(text.slice(0, t.at % Math.max(1, text.length)));
    case "duplicate-key":
      return Buffer.from(duplicateKey(text, t.at, t.value));
    case "garbage":
      return Buffer.concat([Buffer.from(text.slice(0, text.length >> 1)), Buffer.from(t.bytes)]);
    case "bad-utf8":
      return Buffer.concat([Buffer.from(text.slice(0, -1)), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from("}")]);
    case "bom":
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    case "whitespace":
      return Buffer.from(`${" \n\t".repeat(t.n)}${text}${"\r\n".repeat(t.n)}`);
    case "deep":
      return t.as === "array"
        ? Buffer.from(`${"[".repeat(t.n)}${text}${"]".repeat(t.n)}`)
        : Buffer.from(`${'{"parent":'.repeat(t.n)}${text}${"}".repeat(t.n)}`);
  }
}

/** The whole generator: a hook, a body (schema-derived or a fixture, maybe mutated), raw twists, headers. */
export function hookRequest(fixtures: Record<Hook, unknown[]>): fc.Arbitrary<RawRequest> {
  const hook = fc.constantFrom<Hook>("sync", "finalize", "customize");
  return hook.chain((h) => {
    const bySchema = schemaRequest(h === "customize" ? "CustomizeRequest" : "SyncRequest").map((r) =>
      h === "finalize" && typeof r === "object" && r !== null ? { ...r, finalizing: true } : r,
    );
    const pool = [...fixtures[h], ...(h === "customize" ? [] : fixtures[h === "sync" ? "finalize" : "sync"])];
    const byFixture = pool.length > 0 ? fc.constantFrom(...pool) : bySchema;
    const base = fc.oneof({ weight: 3, arbitrary: bySchema }, { weight: 3, arbitrary: byFixture });
    return fc
      .record({
        base,
        mutations: fc.oneof({ weight: 2, arbitrary: fc.constant([] as Mutation[]) }, { weight: 3, arbitrary: fc.array(MUTATION, { minLength: 1, maxLength: 4 }) }),
        twist: RAW_TWIST,
        contentType: CONTENT_TYPE,
        extra: EXTRA_HEADERS,
      })
      .map(({ base: b, mutations, twist: t, contentType, extra }) => {
        const value = applyMutations(b, mutations);
        const text = (JSON.stringify(value) as string | undefined) ?? "";
        const headers: Record<string, string> = { ...extra };
        if (contentType !== "") headers["content-type"] = contentType;
        return {
          hook: h,
          body: twist(text, t),
          headers,
          how: `${h} ${mutations.map((m) => m.op).join("+") || "as generated"} twist=${t.kind} ct=${contentType || "none"} ${JSON.stringify(extra)}`,
        };
      });
  });
}

// ---- HTTP -----------------------------------------------------------------------------------------

export interface RawResponse {
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
}

export function createPoster(port: number): { post: (r: RawRequest) => Promise<RawResponse>; close: () => void } {
  const agent = new Agent({ keepAlive: true, maxSockets: 16 });
  const post = (r: RawRequest): Promise<RawResponse> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(
        { host: "127.0.0.1", port, path: `/${r.hook}`, method: "POST", agent, headers: { ...r.headers, "content-length": String(r.body.length) }, timeout: 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), contentType: res.headers["content-type"] ?? "" });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => {
        req.destroy(new Error(`request timed out: ${r.how}`));
      });
      req.on("error", reject);
      req.end(r.body);
    });
  return {
    post,
    close: () => {
      agent.destroy();
    },
  };
}
