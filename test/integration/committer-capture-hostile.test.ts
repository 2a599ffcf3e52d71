// Hostile trees against the committer's capture, each on a real overlay upper directory of a real
// containerd container: what sandbox contents can do to a snapshot (names, lengths, whiteout look-alikes,
// sparse files, symlink swaps) and what the committer must do about it.
import { createHash } from "node:crypto";
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { capture, layerBytes, type CaptureHooks, type CapturedLayer, type CaptureResult, type CaptureSettings } from "../../src/committer/capture.js";
import { run } from "../../src/committer/cli.js";
import { findTargets } from "../../src/committer/lookup.js";
import { Scratch } from "../../src/committer/scratch.js";
import { zeros } from "../../src/committer/tar.js";
import { HostileTreeError, MAX_PATH_BYTES } from "../../src/committer/walk.js";
import { ContainerdClient } from "../../src/containerd/client.js";
import { missingComponents } from "../support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { applyLayer, flatten } from "../support/layer-tree.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["containerd", "runc", "ctr", "tar", "docker-registry"]);
const GiB = 1024 ** 3;

describe.skipIf(missing)("committer capture of hostile trees (real containerd + overlay)", () => {
  let cd: Containerd;
  let reg: TestRegistry;
  let client: ContainerdClient;
  let work: string;
  let seq = 0;
  const log = (): void => undefined;

  beforeAll(async () => {
    [cd, reg] = await Promise.all([startContainerd(), startRegistry()]);
    client = new ContainerdClient({ socket: cd.socket, namespace: cd.namespace });
    work = mkdtempSync(join(tmpdir(), "committer-hostile-"));
  });
  afterAll(async () => {
    client.close();
    await cd.stop();
    await reg.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** The container's merged root filesystem on the host: writing there is writing as the container does. */
  const rootfs = (id: string): string => join(cd.dir, "state", "io.containerd.runtime.v2.task", cd.namespace, id, "rootfs");

  async function captureOf(
    pod: string,
    over: Partial<CaptureSettings> & { scratchLimitBytes?: number } = {},
    hooks: CaptureHooks = {},
  ): Promise<{ r: CaptureResult; lease: string; scratch: Scratch }> {
    const lease = `hostile-lease-${++seq}`;
    await client.createLease(lease, {});
    const dir = mkdtempSync(join(work, "scratch-"));
    const scratch = new Scratch(dir, over.scratchLimitBytes ?? GiB);
    const targets = await findTargets(client, pod, "ns", ["main"]);
    const r = await capture(client.leased(lease), targets.map((container) => ({ container })), { maxFreezeSeconds: 60, containerdRoot: cd.root, ...over }, scratch, log, hooks);
    return { r, lease, scratch };
  }

  const layerOf = (l: CapturedLayer | undefined, lease: string): AsyncIterable<Buffer> => {
    if (l === undefined) throw new Error("no layer");
    return layerBytes(client.leased(lease), l).chunks;
  };

  /** A capture that must be refused before any freeze, leaving the container running. */
  async function expectRefusedBeforeFreeze(pod: string, id: string, message: RegExp): Promise<void> {
    let frozen = false;
    const attempt = captureOf(pod, {}, {
      onFrozen: () => {
        frozen = true;
      },
    });
    await expect(attempt).rejects.toBeInstanceOf(HostileTreeError);
    await expect(attempt).rejects.toThrow(message);
    expect(frozen).toBe(false);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
  }

  it("a file name that is not UTF-8 is committed, and the image pulled back holds the same bytes", async () => {
    const id = await runContainer(cd, "bytes", "ns", "main");
    const name = Buffer.from([0x6e, 0xff, 0xfe, 0x80, 0x0a, 0x2d]); // "n", invalid UTF-8, a newline, "-"
    const root = Buffer.from(join(rootfs(id), "root"));
    writeFileSync(Buffer.concat([root, Buffer.from("/"), name]), "latin-1 bytes\n");
    mkdirSync(Buffer.concat([root, Buffer.from("/dir-"), name]));
    writeFileSync(Buffer.concat([root, Buffer.from("/dir-"), name, Buffer.from("/inner")]), "inner\n");

    const scratch = mkdtempSync(join(work, "cli-"));
    const image = `${reg.host}/snapshots/bytes:snap-1`;
    const code = await run(["bytes", "ns", `main:${image}`], {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      CONTAINERD_SOCKET: cd.socket,
      CONTAINERD_ROOT: cd.root,
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_SCRATCH_DIR: scratch,
      SNAPSHOT_RESULT_PATH: join(scratch, "result.json"),
    }, { stdout: () => undefined, stderr: () => undefined });
    expect(readFileSync(join(scratch, "result.json"), "utf8")).not.toContain("error");
    expect(code).toBe(0);
    await cd.ctr(["images", "pull", "--plain-http", image]);
    const resumed = await runContainer(cd, "bytes-resumed", "ns", "main", { image });
    // names as hex bytes (od), so nothing between the container and this test re-encodes them
    const listing = await exec(cd, resumed, "printf '%s/' /root/* | od -An -tx1 | tr -d ' \\n'");
    expect(listing).toContain(name.toString("hex"));
    expect(listing).toContain(Buffer.concat([Buffer.from("dir-"), name]).toString("hex"));
    expect(await exec(cd, resumed, "cat /root/n*-")).toBe("latin-1 bytes\n");
    expect(await exec(cd, resumed, "cat /root/dir-*/inner")).toBe("inner\n");
    await removeContainer(cd, resumed);
    await removeContainer(cd, id);
  });

  it(`a path longer than ${MAX_PATH_BYTES} bytes is refused before the freeze, naming the path and the limit`, async () => {
    const id = await runContainer(cd, "deep", "ns", "main");
    // ~4.2 KB deep, built the way a process can: two chains each short enough for one call, then one
    // moved into the other (no system call ever sees the whole path)
    const chain = (n: number): string => Array.from({ length: n }, () => "d".repeat(200)).join("/");
    const root = join(rootfs(id), "root");
    mkdirSync(join(root, chain(10)), { recursive: true });
    mkdirSync(join(root, "moving", chain(11)), { recursive: true });
    writeFileSync(join(root, "moving", chain(11), "leaf"), "deep\n");
    renameSync(join(root, "moving"), join(root, chain(10), "moved"));
    try {
      await expectRefusedBeforeFreeze("deep", id, new RegExp(`path /root/d{20}.*\\(\\d{4} bytes\\).*more than the ${MAX_PATH_BYTES} bytes`));
    } finally {
      // nothing (Node's rm included) removes a path it cannot name: take the chains apart first
      renameSync(join(root, chain(10), "moved"), join(root, "moving"));
    }
    await removeContainer(cd, id);
  });

  it("a regular file named like a whiteout (.wh.<x>) is refused before the freeze, naming the path", async () => {
    const id = await runContainer(cd, "wh", "ns", "main");
    await exec(cd, id, "echo 'not a whiteout' > /etc/.wh.base.txt");
    await expectRefusedBeforeFreeze("wh", id, /file \/etc\/\.wh\.base\.txt is named like an OCI whiteout.*delete \/etc\/base\.txt/);
    await removeContainer(cd, id);
  });

  it("a 1 GiB sparse file written during the pre-copy: its holes are not read or stored inside the freeze, scratch use follows its real blocks, and the image holds the full file", async () => {
    const id = await runContainer(cd, "sparse", "ns", "main");
    const data = Buffer.from("the only real block\n");
    const at = 512 * 1024 * 1024 + 123;
    const limit = 32 * 1024 * 1024; // far less than the file's length: holes written anywhere would not fit
    const { r, lease, scratch } = await captureOf("sparse", { scratchLimitBytes: limit, maxPrecopyPasses: 1 }, {
      // written after the (only) pre-copy pass: the freeze must read it
      onPrecopyPass: () => {
        writeSparse(join(rootfs(id), "root", "sparse"), GiB, data, at);
      },
      onFrozen: async () => {
        expect(await taskStatus(cd, id)).toBe("PAUSED");
      },
    });
    const layer = r.layers[0];
    expect(layer?.frozen?.reread).toBeGreaterThan(0);
    expect(layer?.frozen?.rereadBytes).toBeLessThan(1024 * 1024); // the real blocks, not the GiB
    expect(scratch.used()).toBeLessThan(limit);
    expect(await taskStatus(cd, id)).toBe("RUNNING");

    const expected = createHash("sha256");
    for await (const z of zeros(at)) expected.update(z);
    expected.update(data);
    for await (const z of zeros(GiB - at - data.length)) expected.update(z);
    const tree = flatten(await applyLayer(new Map(), layerOf(layer, lease)));
    expect(tree["root/sparse"]).toMatchObject({ type: "file", content: expected.digest("hex") });
    await removeContainer(cd, id);
  });

  it("a directory swapped for a symlink between the walks is never followed (nothing of its target reaches the layer)", async () => {
    const id = await runContainer(cd, "swap", "ns", "main");
    await exec(cd, id, "set -e; mkdir -p /root/d/sub; echo a > /root/d/a; echo b > /root/d/sub/b");
    const host = mkdtempSync(join(work, "host-secrets-"));
    writeFileSync(join(host, "host-secret"), "must never be captured\n");
    mkdirSync(join(host, "sub"));
    writeFileSync(join(host, "sub", "b"), "host file\n");
    const { r, lease } = await captureOf("swap", { maxPrecopyPasses: 2 }, {
      onPrecopyPass: (_c, pass) => {
        if (pass !== 1) return;
        // what a process in the sandbox can do: replace the directory by a link to a host path
        rmSync(join(rootfs(id), "root", "d"), { recursive: true });
        symlinkSync(host, join(rootfs(id), "root", "d"));
      },
    });
    const tree = flatten(await applyLayer(new Map(), layerOf(r.layers[0], lease)));
    expect(tree["root/d"]).toMatchObject({ type: "symlink", content: host });
    expect(Object.keys(tree).filter((k) => k.startsWith("root/d/"))).toEqual([]);
    const secret = createHash("sha256").update("must never be captured\n").digest("hex");
    expect(Object.values(tree).filter((n) => n.content === secret)).toEqual([]);
    await removeContainer(cd, id);
  });
});

/** A sparse file: `size` bytes long, only `data` at `position` written (the rest is a hole). */
function writeSparse(path: string, size: number, data: Buffer, position: number): void {
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    writeSync(fd, data, 0, data.length, position);
  } finally {
    closeSync(fd);
  }
}
