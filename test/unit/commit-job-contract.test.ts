// One contract, both sides (src/contract/commit-job.ts): the Job the controller builds is an
// invocation the committer accepts, and the result the committer writes is read back by the
// controller, within the kubelet's 4096-byte termination message, at 32 containers with the longest
// names a valid reference allows.
import { describe, expect, it } from "vitest";
import type { Job, SandboxSnapshotStatus } from "../../src/api/types.js";
import { formatResult } from "../../src/committer/cli.js";
import { parseInvocation } from "../../src/committer/config.js";
import { COMMITTER_ENV_VARS, ENV, formatCommitterResult, parseCommitterResult, RESULT_LIMIT } from "../../src/contract/commit-job.js";
import { parseCommitResult } from "../../src/reconcile/commit-result.js";
import { sync } from "../../src/reconcile/sync.js";
import { cfg, job, jobPod, pod, registryHolds, request, snapshot, t0, t1 } from "../support/fixtures.js";

const NS = "n".repeat(63);
const CONTAINERS = Array.from({ length: 32 }, (_, i) => `c${String(i).padStart(2, "0")}-${"x".repeat(59)}`);
// registry.example.com/snapshots/<ns 63>/<source>/<container 63> must stay within 255 characters.
const SOURCE = "p".repeat(255 - "registry.example.com/snapshots/".length - 63 - 1 - 1 - 63);
const digestOf = (i: number): string => `sha256:${i.toString(16).padStart(2, "0").repeat(32)}`;

interface ContainerSpec {
  args: string[];
  env: { name: string; value: string }[];
}
const committerOf = (j: Job): ContainerSpec => (j.spec as { template: { spec: { containers: ContainerSpec[] } } }).template.spec.containers[0] as ContainerSpec;

function committing(): { status: SandboxSnapshotStatus; job: Job } {
  const snap = snapshot({ podName: SOURCE }, { name: "s".repeat(55) });
  snap.metadata.namespace = NS;
  const source = pod(SOURCE, { containers: CONTAINERS });
  source.metadata = { ...source.metadata, namespace: NS };
  const res = sync(request(snap, { pods: [source] }), cfg, t0);
  const j = res.children[0];
  if (res.status.phase !== "Committing" || j === undefined) throw new Error(`not committing: ${JSON.stringify(res.status.conditions)}`);
  return { status: res.status, job: j };
}

describe("commit Job ↔ committer contract", () => {
  it("the committer accepts the Job's arguments and environment as built, 32 containers with maximal names", () => {
    const { status, job: j } = committing();
    const c = committerOf(j);
    const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
    for (const name of Object.keys(env)) expect(COMMITTER_ENV_VARS).toContain(name);
    const inv = parseInvocation(c.args, env);
    if (!inv.ok) throw inv.error;
    if (inv.value.mode !== "commit") throw new Error("not a commit");
    expect(inv.value.pod).toBe(SOURCE);
    expect(inv.value.namespace).toBe(NS);
    expect(inv.value.targets.map((t) => t.container)).toEqual(CONTAINERS);
    expect(inv.value.targets.map((t) => t.image)).toEqual((status.containers ?? []).map((x) => x.imageUri));
    expect(inv.value.settings.snapshotUid).toBe(env[ENV.SNAPSHOT_UID]);
    expect(inv.value.settings.resultPath).toBe(env[ENV.RESULT_PATH]);
  });

  it("the success result of 32 containers fits 4096 bytes and reads back as the same digests, in argument order", () => {
    const { status, job: j } = committing();
    const inv = parseInvocation(committerOf(j).args, {});
    if (!inv.ok || inv.value.mode !== "commit") throw new Error("invocation");
    const containers = inv.value.targets.map((t, i) => ({ name: t.container, image: t.image, digest: digestOf(i), sizeBytes: Number.MAX_SAFE_INTEGER }));
    const line = formatResult({ containers, freezeMillis: 123_456 });
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(RESULT_LIMIT);
    // The full form would not fit: this is the compact one.
    expect(Buffer.byteLength(JSON.stringify({ containers, freezeMillis: 123_456 }))).toBeGreaterThan(RESULT_LIMIT);
    const back = parseCommitResult(line, (status.containers ?? []).map((c) => c.containerName));
    expect(back).toEqual({
      kind: "success",
      containers: containers.map((c) => ({ name: c.name, digest: c.digest, sizeBytes: c.sizeBytes })),
      freezeMillis: 123_456,
    });

    // …and the controller records them once the registry backs them.
    const done = sync(
      request(snapshot({ podName: SOURCE }, { name: "s".repeat(55), status }), {
        jobs: [job(`${"s".repeat(55)}-commit`, "succeeded")],
        pods: [jobPod(`${"s".repeat(55)}-commit`, "Succeeded", line)],
      }),
      cfg,
      t1,
      { images: registryHolds(status, Object.fromEntries(containers.map((c) => [c.name, c.digest]))) },
    );
    expect(done.status.phase).toBe("Succeed");
    expect(done.status.containers?.map((c) => c.imageDigest)).toEqual(containers.map((c) => c.digest));
  });

  it("writes the full, OpenSandbox-style form whenever it fits", () => {
    const r = { containers: [{ name: "sandbox", image: "r.io/a/b:snap-1", digest: digestOf(1), sizeBytes: 10 }], freezeMillis: 5 };
    expect(JSON.parse(formatCommitterResult(r))).toEqual(r);
    expect(parseCommitterResult(formatCommitterResult(r), ["sandbox"])).toEqual({ kind: "success", containers: [{ name: "sandbox", digest: digestOf(1), sizeBytes: 10 }], freezeMillis: 5 });
  });

  it("reads a cut result as not a result, saying it was cut at the limit (the registry then recovers it)", () => {
    const full = JSON.stringify({ containers: CONTAINERS.map((name, i) => ({ name, image: `r.io/x/${name}:t`, digest: digestOf(i) })) });
    const cut = full.slice(0, RESULT_LIMIT);
    const r = parseCommitterResult(cut, CONTAINERS);
    expect(r.kind).toBe("invalid");
    if (r.kind === "invalid") expect(r.message).toContain("4096-byte");
  });

  it("refuses a compact result whose digest count does not match the containers", () => {
    const line = JSON.stringify({ digests: [digestOf(1)] });
    expect(parseCommitterResult(line, ["a", "b"])).toMatchObject({ kind: "invalid" });
  });

  it("keeps an error result within the limit", () => {
    const line = formatCommitterResult({ error: "é".repeat(10_000) });
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(RESULT_LIMIT);
    expect(parseCommitterResult(line, [])).toMatchObject({ kind: "error" });
  });
});
