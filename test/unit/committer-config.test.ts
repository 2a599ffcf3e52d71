import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { COMMITTER_ENV_VARS, parseInvocation, parseBytes, UsageError, UNLIMITED } from "../../src/committer/config.js";

const REF = "registry.example.com:5000/snapshots/sbx-main:snap-gen3";

function ok(argv: string[], env: Record<string, string> = {}) {
  const r = parseInvocation(argv, env);
  if (!r.ok) throw new Error(`expected success, got ${r.error.message}`);
  return r.value;
}
function err(argv: string[], env: Record<string, string> = {}): UsageError {
  const r = parseInvocation(argv, env);
  if (r.ok) throw new Error("expected a usage error");
  return r.error;
}

describe("image-committer arguments", () => {
  it("parses the OpenSandbox commit form with defaults for every setting", () => {
    const inv = ok(["sbx-0", "team-a", `main:${REF}`, "sidecar:localhost/x/y"]);
    expect(inv.mode).toBe("commit");
    if (inv.mode !== "commit") return;
    expect(inv.pod).toBe("sbx-0");
    expect(inv.namespace).toBe("team-a");
    expect(inv.targets.map((t) => [t.container, t.image, t.ref.registry, t.ref.repository, t.ref.tag])).toEqual([
      ["main", REF, "registry.example.com:5000", "snapshots/sbx-main", "snap-gen3"],
      ["sidecar", "localhost/x/y", "localhost", "x/y", "latest"],
    ]);
    expect(inv.settings).toEqual({
      containerdSocket: "/run/containerd/containerd.sock",
      containerdNamespace: "k8s.io",
      containerdRoot: "/var/lib/containerd",
      registryInsecure: false,
      dockerConfig: undefined,
      compression: "gzip",
      maxFreezeSeconds: 60,
      scratchDir: "/tmp",
      scratchLimitBytes: UNLIMITED,
      resultPath: "/dev/termination-log",
      snapshotUid: undefined,
      snapshotName: undefined,
      snapshotNamespace: undefined,
      podUid: undefined,
      tarCommand: "tar",
      precopyPasses: 3,
    });
  });

  it("takes the source pod's UID from SNAPSHOT_POD_UID (optional) and refuses one that is not a UID", () => {
    const uid = "3f0c9a4e-2b7d-4c1e-9a55-0d6b8e1f2a3c";
    expect(ok(["sbx-0", "team-a", `main:${REF}`], { SNAPSHOT_POD_UID: uid }).settings.podUid).toBe(uid);
    expect(ok(["sbx-0", "team-a", `main:${REF}`], { SNAPSHOT_POD_UID: "" }).settings.podUid).toBeUndefined();
    expect(err(["sbx-0", "team-a", `main:${REF}`], { SNAPSHOT_POD_UID: "a b" }).message).toMatch(/^SNAPSHOT_POD_UID: "a b" is not a pod UID/);
  });

  it("parses the unpause form (container names, or the commit form's pairs)", () => {
    const inv = ok(["unpause", "sbx-0", "team-a", "main", `sidecar:${REF}`]);
    expect(inv).toMatchObject({ mode: "unpause", pod: "sbx-0", namespace: "team-a", containers: ["main", "sidecar"] });
  });

  it("reads every setting from the environment", () => {
    const inv = ok(["p", "n", `c:${REF}`], {
      CONTAINERD_SOCKET: "/x/containerd.sock",
      CONTAINERD_NAMESPACE: "default",
      CONTAINERD_ROOT: "/data/containerd",
      SNAPSHOT_REGISTRY_INSECURE: "true",
      DOCKER_CONFIG: "/var/run/secrets/push",
      SNAPSHOT_COMPRESSION: "zstd",
      SNAPSHOT_MAX_FREEZE_SECONDS: "2.5",
      SNAPSHOT_SCRATCH_DIR: "/scratch",
      SNAPSHOT_SCRATCH_LIMIT_BYTES: "10Gi",
      SNAPSHOT_RESULT_PATH: "/tmp/result.json",
      SNAPSHOT_UID: "0b6f-uid",
      SNAPSHOT_NAME: "snap-1",
      SNAPSHOT_NAMESPACE: "team-a",
    });
    expect(inv.settings).toMatchObject({
      containerdSocket: "/x/containerd.sock",
      containerdNamespace: "default",
      containerdRoot: "/data/containerd",
      registryInsecure: true,
      dockerConfig: "/var/run/secrets/push",
      compression: "zstd",
      maxFreezeSeconds: 2.5,
      scratchDir: "/scratch",
      scratchLimitBytes: 10 * 1024 ** 3,
      resultPath: "/tmp/result.json",
      snapshotUid: "0b6f-uid",
      snapshotName: "snap-1",
      snapshotNamespace: "team-a",
    });
  });

  it.each([
    [[], /<pod>: missing/],
    [["p"], /<namespace>: missing/],
    [["p", "n"], /<container>:<imageRef>: missing/],
    [["unpause", "p", "n"], /<container>: missing/],
    [["P_bad", "n", `c:${REF}`], /argument 1 <pod>: "P_bad" is not a valid pod name/],
    [["p", "N", `c:${REF}`], /argument 2 <namespace>: "N" is not a valid namespace/],
    [["p", "n", "main"], /argument 3 <container>:<imageRef>: "main" must be <container>:<imageRef>/],
    [["p", "n", `Main:${REF}`], /argument 3 .*not a valid container name/],
    [["p", "n", `c:${REF}`, `c:${REF}`], /argument 4 .*named twice/],
    [["p", "n", "c:reg.io/UPPER:1"], /argument 3 .*repository/],
    [["p", "n", `c:reg.io/a@sha256:${"a".repeat(64)}`], /argument 3 .*names a digest/],
    [["unpause", "p", "n", "c", "c"], /argument 5 .*named twice/],
  ])("explains bad arguments %j", (argv, msg) => {
    expect(err(argv).message).toMatch(msg);
  });

  it.each([
    ["CONTAINERD_SOCKET", "relative.sock"],
    ["CONTAINERD_NAMESPACE", "bad ns"],
    ["CONTAINERD_ROOT", "var/lib"],
    ["SNAPSHOT_REGISTRY_INSECURE", "yes"],
    ["DOCKER_CONFIG", "relative"],
    ["SNAPSHOT_COMPRESSION", "lz4"],
    ["SNAPSHOT_MAX_FREEZE_SECONDS", "0"],
    ["SNAPSHOT_MAX_FREEZE_SECONDS", "-1"],
    ["SNAPSHOT_MAX_FREEZE_SECONDS", "1e3"],
    ["SNAPSHOT_MAX_FREEZE_SECONDS", "7200"],
    ["SNAPSHOT_SCRATCH_DIR", "scratch"],
    ["SNAPSHOT_SCRATCH_LIMIT_BYTES", "ten"],
    ["SNAPSHOT_SCRATCH_LIMIT_BYTES", "-5"],
    ["SNAPSHOT_RESULT_PATH", "result.json"],
    ["SNAPSHOT_UID", "a\nb"],
  ])("names the environment variable %s when its value %j is wrong", (name, value) => {
    const e = err(["p", "n", `c:${REF}`], { [name]: value });
    expect(e.where).toBe(name);
    expect(e.message.startsWith(`${name}: `)).toBe(true);
  });

  it("reads byte counts as integers or Kubernetes quantities", () => {
    expect(parseBytes("1048576")).toBe(1048576);
    expect(parseBytes("512Mi")).toBe(512 * 1024 * 1024);
    expect(parseBytes("2G")).toBe(2e9);
    expect(parseBytes("1.5Gi")).toBeUndefined();
    expect(parseBytes("99999999999999999999")).toBeUndefined();
  });

  it("never throws and always names where the problem is, whatever the input", () => {
    const envKeys = COMMITTER_ENV_VARS;
    const arg = fc.oneof(fc.string(), fc.constantFrom("unpause", "p", "n", `c:${REF}`, "c:", ":x", "c:reg.io/a:b:c"));
    fc.assert(
      fc.property(fc.array(arg, { maxLength: 6 }), fc.dictionary(fc.constantFrom(...envKeys), fc.string()), (argv, env) => {
        const r = parseInvocation(argv, env);
        if (r.ok) {
          expect(["commit", "unpause"]).toContain(r.value.mode);
        } else {
          expect(r.error).toBeInstanceOf(UsageError);
          expect(r.error.where).not.toBe("");
          expect(r.error.message.length).toBeGreaterThan(r.error.where.length);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("SNAPSHOT_PRECOPY_PASSES", () => {
  const base = ["pod", "ns", "main:registry.example/x:1"];
  it("takes 0 to 5 and refuses anything else, naming the setting", () => {
    const ok = parseInvocation(base, { SNAPSHOT_PRECOPY_PASSES: "0" });
    expect(ok.ok && ok.value.settings.precopyPasses).toBe(0);
    for (const bad of ["6", "-1", "1.5", "x", " 2"]) {
      const r = parseInvocation(base, { SNAPSHOT_PRECOPY_PASSES: bad });
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.message).toMatch(/SNAPSHOT_PRECOPY_PASSES/);
    }
  });
});

