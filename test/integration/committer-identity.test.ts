// The right image and the right pod, on a real containerd with a real registry: a base image named
// through an index whose entry has no platform (containerd runs it) is snapshotted; with
// SNAPSHOT_POD_UID the committer refuses a pod recreated under the same name, naming both UIDs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/committer/cli.js";
import { buildBaseImage } from "../support/base-image.js";
import { missingComponents } from "../support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["containerd", "runc", "ctr", "tar", "docker-registry"]);

describe.skipIf(missing)("committer: the right image and the right pod (real containerd + registry)", () => {
  let cd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let n = 0;
  const quiet = { stdout: (): void => undefined, stderr: (): void => undefined };

  beforeAll(async () => {
    [cd, reg] = await Promise.all([startContainerd(), startRegistry()]);
    work = mkdtempSync(join(tmpdir(), "committer-identity-"));
  });
  afterAll(async () => {
    await cd.stop();
    await reg.close();
    rmSync(work, { recursive: true, force: true });
  });

  const env = (over: Record<string, string> = {}): Record<string, string> => {
    const dir = mkdtempSync(join(work, "run-"));
    return {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      CONTAINERD_SOCKET: cd.socket,
      CONTAINERD_ROOT: cd.root,
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_SCRATCH_DIR: dir,
      SNAPSHOT_RESULT_PATH: join(dir, "result.json"),
      SNAPSHOT_UID: `uid-${++n}`,
      ...over,
    };
  };
  const result = (e: Record<string, string>): { error?: string; containers?: { digest: string }[] } =>
    JSON.parse(readFileSync(e.SNAPSHOT_RESULT_PATH ?? "", "utf8")) as { error?: string; containers?: { digest: string }[] };
  const ref = (repo: string): string => `${reg.host}/snapshots/${repo}:t${n}`;

  it("snapshots a container whose image index entry carries no platform, as containerd runs it", async () => {
    const image = await buildBaseImage("localhost/test/noplatform:1", { indexWithoutPlatform: true });
    const tar = join(work, "noplatform.tar");
    writeFileSync(tar, image.tar);
    await cd.ctr(["images", "import", "--snapshotter", "overlayfs", tar]);
    const id = await runContainer(cd, "noplat", "ns", "main", { image: image.name });
    await exec(cd, id, "echo from-noplat > /root/mark");
    const e = env();
    const code = await run(["noplat", "ns", `main:${ref("noplat")}`], e, quiet);
    expect(result(e).error).toBeUndefined();
    expect(code).toBe(0);
    const m = await reg.client().getManifest("snapshots/noplat", `t${n}`);
    // the base layer of the platform-less manifest, then the snapshot's layer
    expect(m.manifest.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
    expect((m.manifest as { layers: { digest: string }[] }).layers[0]?.digest).toBe(image.layerDigest);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("with SNAPSHOT_POD_UID, refuses a pod recreated under the same name and names both UIDs; the right pod commits", async () => {
    const oldUid = "0b7c4f1e-1111-4a8e-9d5c-000000000001";
    const newUid = "0b7c4f1e-2222-4a8e-9d5c-000000000002";
    const id = await runContainer(cd, "sts-0", "ns", "main", { labels: { "io.kubernetes.pod.uid": newUid } });
    const wrong = env({ SNAPSHOT_POD_UID: oldUid });
    expect(await run(["sts-0", "ns", `main:${ref("sts")}`], wrong, quiet)).toBe(1);
    const err = result(wrong).error ?? "";
    expect(err).toContain(`belongs to pod UID ${newUid}`);
    expect(err).toContain(`source pod UID ${oldUid} (SNAPSHOT_POD_UID)`);
    expect(err).toMatch(/recreated under the same name/);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    const right = env({ SNAPSHOT_POD_UID: newUid });
    expect(await run(["sts-0", "ns", `main:${ref("sts")}`], right, quiet)).toBe(0);
    expect(result(right).containers?.[0]?.digest).toMatch(/^sha256:/);
    await removeContainer(cd, id);
  });
});
