// End to end with registry credentials (DESIGN.md: SNAPSHOT_PUSH_SECRET, REGISTRY_CLEANUP_DOCKER_CONFIG)
// against a registry that requires a login: a missing push Secret fails the snapshot fast; with the
// Secret the commit Job mounts it and points DOCKER_CONFIG at it, the real committer pushes with it,
// and the finalize hook deletes with the controller-wide credential. The password never shows up in
// status, Events or the hook server's log.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingComponents } from "../support/components.js";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import {
  commitEnv,
  GROUP,
  SNAPSHOTS,
  VERSION,
  createNamespace,
  createNode,
  createRunningPod,
  createSnapshot,
  finishJobPod,
  getSnapshot,
  plain,
  runCommitter,
  snapshotObject,
  startE2E,
  waitForJob,
  waitForJobGone,
  waitForJobPod,
  waitForSnapshot,
  type E2E,
} from "../support/cluster-e2e.js";
import { labelPodUid, removeContainer, runContainer, startContainerd, type Containerd } from "../support/containerd.js";
import { startRegistry, writeDockerConfig, type TestRegistry } from "../support/registry.js";

const missing = missingClusterComponents() ?? missingComponents(["containerd", "runc", "ctr", "docker-registry", "htpasswd"]);
const NODE = "node-a";
const NS = "e2e-secret";
const USER = "pusher";
const PASSWORD = "s3cret-Pa55word-e2e";
const SECRET = "snapshot-push";

describe.skipIf(missing)("SandboxSnapshot end to end with registry credentials", () => {
  let e: E2E | undefined;
  let cd: Containerd | undefined;
  let reg: TestRegistry | undefined;
  let dir = "";
  let containerId = "";
  const env = (): { e: E2E; cd: Containerd; reg: TestRegistry } => {
    if (!e || !cd || !reg) throw new Error("environment not started");
    return { e, cd, reg };
  };
  const basic = (): string => `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}`;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "e2e-secret-"));
    cd = await startContainerd();
    reg = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    const cleanupConfig = join(writeDockerConfig(dir, reg.host, { username: USER, password: PASSWORD }), "config.json");
    e = await startE2E({
      env: commitEnv(cd, reg, {
        SNAPSHOT_REPOSITORY_TEMPLATE: "{registry}/{namespace}/{source}-{container}",
        SNAPSHOT_PUSH_SECRET: SECRET,
        REGISTRY_CLEANUP_DOCKER_CONFIG: cleanupConfig,
      }),
    });
    await createNode(e.cluster, NODE);
    await createNamespace(e.cluster, NS);
    containerId = await runContainer(cd, "sbx", NS, "main");
    await labelPodUid(cd, containerId, (await createRunningPod(e.cluster, NS, "sbx", NODE, ["main"], {}, { main: containerId })).metadata?.uid);
  }, 600_000);

  afterAll(async () => {
    await e?.stop();
    if (cd && containerId) await removeContainer(cd, containerId).catch(() => undefined);
    await reg?.close();
    await cd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("fails fast with PushSecretMissing when the namespace has no push Secret", async () => {
    const { e } = env();
    await createSnapshot(e.cluster, snapshotObject(NS, "snap-nosecret", { podName: "sbx" }));
    const s = await waitForSnapshot(e, NS, "snap-nosecret", "Failed", (x) => x.status?.phase === "Failed");
    const cond = s.status?.conditions?.find((c) => c.type === "Failed");
    expect(cond?.reason).toBe("PushSecretMissing");
    expect(cond?.message).toContain(SECRET);
    const jobs = await e.cluster.batch.listNamespacedJob({ namespace: NS });
    expect(jobs.items.filter((j) => j.metadata?.name?.startsWith("snap-nosecret"))).toEqual([]);
  });

  it("pushes with the mounted push Secret, and the finalize hook deletes with the clean-up credential", async () => {
    const { e, reg } = env();
    const auths = { auths: { [reg.host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString("base64") } } };
    await e.cluster.core.createNamespacedSecret({
      namespace: NS,
      body: plain({
        metadata: { name: SECRET },
        type: "kubernetes.io/dockerconfigjson",
        data: { ".dockerconfigjson": Buffer.from(JSON.stringify(auths)).toString("base64") },
      }),
    });
    await createSnapshot(e.cluster, snapshotObject(NS, "snap-auth", { podName: "sbx" }));
    const job = await waitForJob(e, NS, "snap-auth-commit");
    const spec = job.spec?.template.spec;
    const c = spec?.containers[0];
    const secretVolume = spec?.volumes?.find((v) => v.secret?.secretName === SECRET);
    expect(secretVolume).toBeDefined();
    const mount = c?.volumeMounts?.find((m) => m.name === secretVolume?.name);
    expect(mount?.readOnly).toBe(true);
    expect(c?.env?.find((v) => v.name === "DOCKER_CONFIG")?.value).toBe(mount?.mountPath);
    const committing = await waitForSnapshot(e, NS, "snap-auth", "Committing", (x) => x.status?.phase === "Committing");
    const ref = committing.status?.containers?.[0]?.imageUri ?? "";
    expect(ref.startsWith(`${reg.host}/snapshots/${NS}/sbx-main:`)).toBe(true);

    const run = await runCommitter(e, job);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toContain(PASSWORD);
    await finishJobPod(e, NS, await waitForJobPod(e, NS, "snap-auth-commit"), 0, run.result);
    const done = await waitForSnapshot(e, NS, "snap-auth", "Succeed", (x) => x.status?.phase === "Succeed");
    const digest = done.status?.containers?.[0]?.imageDigest ?? "";
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    await waitForJobGone(e, NS, "snap-auth-commit");

    const repo = ref.slice(reg.host.length + 1, ref.lastIndexOf(":"));
    const url = `${reg.httpUrl}/v2/${repo}/manifests/${digest}`;
    const headers = { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" };
    expect((await fetch(url, { method: "HEAD", headers })).status).toBe(401);
    expect((await fetch(url, { method: "HEAD", headers: { ...headers, authorization: basic() } })).status).toBe(200);

    await e.cluster.custom.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, name: "snap-auth" });
    await waitFor("snap-auth finalized", async () => (await getSnapshot(e.cluster, NS, "snap-auth")) === undefined, 60_000);
    expect((await fetch(url, { method: "HEAD", headers: { ...headers, authorization: basic() } })).status).toBe(404);
  });

  it("never puts the password in status, Events or the hook server's log", async () => {
    const { e } = env();
    const encoded = Buffer.from(`${USER}:${PASSWORD}`).toString("base64");
    const snaps: unknown = await e.cluster.custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS });
    const events = await e.cluster.core.listNamespacedEvent({ namespace: NS });
    for (const text of [JSON.stringify(snaps), JSON.stringify(events.items), e.hookLog.join("\n")]) {
      expect(text).not.toContain(PASSWORD);
      expect(text).not.toContain(encoded);
    }
  });
});
