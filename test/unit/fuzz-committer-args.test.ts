// Reliability: "never crashed" for the committer's command line. parseInvocation (src/committer/config.ts)
// is fuzzed with arbitrary argument lists and environments, and with valid invocations where exactly one
// argument or variable is broken: it never throws, fails only with its typed UsageError, and the message
// names the argument or environment variable at fault. RELIABILITY_FULL=1 runs 100,000 cases per property.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { COMMITTER_ENV_VARS, parseInvocation, UsageError, USAGE } from "../../src/committer/config.js";

const FULL = process.env.RELIABILITY_FULL === "1";
const RUNS = FULL ? 100_000 : 2_000;

const ENV_VARS = COMMITTER_ENV_VARS;

const VALID_ENV: Record<string, string> = {
  CONTAINERD_SOCKET: "/run/containerd/containerd.sock",
  CONTAINERD_NAMESPACE: "k8s.io",
  CONTAINERD_ROOT: "/var/lib/containerd",
  SNAPSHOT_REGISTRY_INSECURE: "true",
  DOCKER_CONFIG: "/var/run/secrets/push",
  SNAPSHOT_COMPRESSION: "zstd",
  SNAPSHOT_MAX_FREEZE_SECONDS: "30",
  SNAPSHOT_SCRATCH_DIR: "/scratch",
  SNAPSHOT_SCRATCH_LIMIT_BYTES: "10Gi",
  SNAPSHOT_RESULT_PATH: "/dev/termination-log",
  SNAPSHOT_UID: "7d3f0c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
  SNAPSHOT_NAME: "snap1",
  SNAPSHOT_NAMESPACE: "sandboxes",
};
const VALID_COMMIT = ["sbx-0", "sandboxes", "sandbox:registry.example.com:5000/snapshots/sbx-sandbox:snap-gen3", "sidecar:localhost/x:y"];
const VALID_UNPAUSE = ["unpause", "sbx-0", "sandboxes", "sandbox", "sidecar"];

const NASTY = fc.constantFrom(
  "",
  " ",
  "\u0000",
  "\uD800",
  "🦓",
  "-",
  "--help",
  "unpause",
  ":",
  "a:",
  ":b",
  "a:b:c:d",
  "sandbox:@sha256:" + "a".repeat(64),
  "sandbox:x@sha256:" + "a".repeat(64),
  "../..",
  "/",
  "unix:///x",
  "1e309",
  "NaN",
  "-1",
  "0",
  "0.0000001",
  "3601",
  "99999999999999999999Gi",
  "true ",
  "TRUE",
  "x".repeat(100_000),
  "sandbox:" + "r".repeat(70_000) + "/x:y",
);
const STRING = fc.oneof(
  { weight: 3, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 30 }) },
  { weight: 2, arbitrary: NASTY },
  { weight: 2, arbitrary: fc.constantFrom(...VALID_COMMIT, ...VALID_UNPAUSE, ...Object.values(VALID_ENV)) },
);
const ARGV = fc.oneof(
  fc.array(STRING, { maxLength: 8 }),
  fc.tuple(fc.constantFrom(VALID_COMMIT, VALID_UNPAUSE), fc.nat(), STRING).map(([base, i, v]) => {
    const a = [...base];
    a[i % a.length] = v;
    return a;
  }),
);
const ENV = fc.oneof(
  fc.dictionary(fc.constantFrom(...ENV_VARS, "PATH", "HOME", "__proto__", "constructor"), STRING, { maxKeys: 8 }),
  fc.tuple(fc.constantFrom(...ENV_VARS), STRING).map(([k, v]) => ({ ...VALID_ENV, [k]: v })),
);

/** Where an error may point: an argument (by position) or one of the committer's variables. */
function plausibleWhere(where: string): boolean {
  return /^(<pod>|<namespace>|<container>|<container>:<imageRef>|argument \d+ <[a-z:<>A-Z]+>)$/.test(where) || ENV_VARS.includes(where);
}

const MAX_MESSAGE = 1_000 + USAGE.length;

describe("reliability: the committer's argument and environment parsing never crashes", () => {
  it(`returns an invocation or a UsageError naming the argument or variable, for ${RUNS} arbitrary inputs`, () => {
    let ok = 0;
    let failed = 0;
    fc.assert(
      fc.property(ARGV, ENV, (argv, env) => {
        let r: ReturnType<typeof parseInvocation>;
        try {
          r = parseInvocation(argv, env);
        } catch (e) {
          throw new Error(`parseInvocation threw ${String(e)}`);
        }
        if (r.ok) {
          ok++;
          return;
        }
        failed++;
        expect(r.error).toBeInstanceOf(UsageError);
        expect(plausibleWhere(r.error.where), `unexpected where ${JSON.stringify(r.error.where)}: ${r.error.message.slice(0, 200)}`).toBe(true);
        expect(r.error.message.startsWith(`${r.error.where}: `)).toBe(true);
        expect(r.error.message.length).toBeLessThanOrEqual(MAX_MESSAGE);
      }),
      { numRuns: RUNS },
    );
    console.log(`[reliability] committer arguments: ${ok + failed} inputs, ${ok} valid, ${failed} usage errors`);
    expect(ok).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
  }, FULL ? 600_000 : 20_000);

  it("names exactly the variable at fault when one setting of a valid invocation is broken", () => {
    const bad: Record<string, fc.Arbitrary<string>> = {
      CONTAINERD_SOCKET: fc.oneof(fc.constantFrom("relative.sock", "tcp://x", "/a\u0000b"), fc.string().filter((s) => s !== "" && !s.startsWith("/") && !s.startsWith("unix:///"))),
      CONTAINERD_NAMESPACE: fc.oneof(fc.constantFrom("k8s io", ".x", "x".repeat(77), "a/b"), fc.string({ minLength: 1 }).filter((s) => !/^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/.test(s) || s.length > 76)),
      CONTAINERD_ROOT: fc.string({ minLength: 1 }).filter((s) => !s.startsWith("/")),
      SNAPSHOT_REGISTRY_INSECURE: fc.string({ minLength: 1 }).filter((s) => s !== "true" && s !== "false"),
      DOCKER_CONFIG: fc.string({ minLength: 1 }).filter((s) => !s.startsWith("/")),
      SNAPSHOT_COMPRESSION: fc.string({ minLength: 1 }).filter((s) => s !== "gzip" && s !== "zstd"),
      SNAPSHOT_MAX_FREEZE_SECONDS: fc.oneof(fc.constantFrom("0", "-1", "3601", "1e3", "NaN", "Infinity", "ten", " 5"), fc.double().map(String).filter((s) => !(Number(s) > 0 && Number(s) <= 3600 && /^[0-9]+(\.[0-9]+)?$/.test(s)))),
      SNAPSHOT_SCRATCH_DIR: fc.string({ minLength: 1 }).filter((s) => !s.startsWith("/")),
      SNAPSHOT_SCRATCH_LIMIT_BYTES: fc.oneof(fc.constantFrom("10 GB", "1.5Gi", "-1", "99999999999999999999", "10gi", "Gi"), fc.string({ minLength: 1 }).filter((s) => !/^\s*[0-9]+(|k|M|G|T|Ki|Mi|Gi|Ti)\s*$/.test(s))),
      SNAPSHOT_RESULT_PATH: fc.string({ minLength: 1 }).filter((s) => !s.startsWith("/")),
      SNAPSHOT_UID: fc.oneof(fc.constant("x".repeat(254)), fc.string({ minLength: 1, maxLength: 40 }).map((s) => `${s}\u0007`)),
      SNAPSHOT_NAME: fc.string({ maxLength: 20 }).map((s) => `a\n${s}`),
      SNAPSHOT_NAMESPACE: fc.string({ maxLength: 20 }).map((s) => `\u007f${s}`),
    };
    const arb = fc.constantFrom(...Object.keys(bad)).chain((name) => fc.tuple(fc.constant(name), bad[name] as fc.Arbitrary<string>, fc.boolean()));
    fc.assert(
      fc.property(arb, ([name, value, asUnpause]) => {
        const r = parseInvocation(asUnpause ? VALID_UNPAUSE : VALID_COMMIT, { ...VALID_ENV, [name]: value });
        expect(r.ok, `${name}=${JSON.stringify(value)} was accepted`).toBe(false);
        if (!r.ok) {
          expect(r.error.where).toBe(name);
          expect(r.error.message).toContain(name);
        }
      }),
      { numRuns: Math.min(RUNS, 5_000) },
    );
  }, 60_000);

  it("names the argument at fault when one argument of a valid invocation is broken", () => {
    const arb = fc.tuple(fc.constantFrom(0, 1, 2, 3), fc.oneof(NASTY, fc.string({ maxLength: 20 })), fc.boolean());
    fc.assert(
      fc.property(arb, ([i, value, asUnpause]) => {
        const base = asUnpause ? VALID_UNPAUSE.slice(1) : VALID_COMMIT;
        const argv = [...base];
        if (i === 0 && value === "unpause") return; // that is the other command, not a broken argument
        argv[i] = value;
        const r = parseInvocation(asUnpause ? ["unpause", ...argv] : argv, VALID_ENV);
        if (r.ok) return; // the replacement happened to be valid
        const position = i + (asUnpause ? 2 : 1);
        expect(r.error.where.startsWith(`argument ${position} `) || r.error.where.startsWith(`argument ${position - 1} `) || r.error.where.startsWith("argument")).toBe(true);
        // a duplicate container is reported at the second occurrence; anything else exactly where it is
        if (!r.error.message.includes("named twice")) expect(r.error.where.startsWith(`argument ${position} `)).toBe(true);
      }),
      { numRuns: Math.min(RUNS, 5_000) },
    );
  }, 60_000);
});
