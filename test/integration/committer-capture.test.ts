// The committer's capture against a real containerd (runc, overlayfs): layer conformance with
// containerd's own Diff service, the freeze (observable from task status), the watchdog, and the
// failure paths that must leave every container running.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerdClient } from "../../src/containerd/client.js";
import { capture, layerBytes, type CaptureHooks, type CapturedLayer, type CaptureResult, type CaptureSettings } from "../../src/committer/capture.js";
import { WatchdogExpired } from "../../src/committer/freeze.js";
import { ScratchFullError } from "../../src/committer/layer.js";
import { findTargets, LookupError, type TargetContainer } from "../../src/committer/lookup.js";
import { Scratch } from "../../src/committer/scratch.js";
import { emptyHeader, encodeHeader, END_OF_ARCHIVE, paddingFor, type TarHeader } from "../../src/committer/tar.js";
import { baseLayerTar } from "../support/base-image.js";
import { missingComponents } from "../support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { applyLayer, flatten, type Tree } from "../support/layer-tree.js";

const missing = missingComponents(["containerd", "runc", "ctr", "tar"]);

const CAP_NET_RAW = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
const BINARY = Buffer.from([0xff, 0x00, 0x80, 0x0a, 0x3d, 0x20, 0xc3]);

/** Changes a container makes: adds, changes, deletes, replaces directories, links, modes, owners. */
const MIXED_CHANGES = `
set -e
echo changed >> /etc/base.txt
echo new > /root/new.txt
mkdir -p /opt/app/deep/er && echo deep > /opt/app/deep/er/f
rm /data/doomed.txt
rm /data/keep/b.txt
rm -rf /data/replace && mkdir /data/replace && echo fresh > /data/replace/fresh.txt
rm -rf /var
rm /etc/group && mkdir /etc/group && echo inside > /etc/group/file
rm -rf /usr && echo now-a-file > /usr
echo f > /root/f1 && ln /root/f1 /root/f1-hard && ln /root/f1 /opt/f1-hard2
ln -s /etc/base.txt /root/sym-abs && ln -s ../etc/passwd /root/sym-rel && ln -s /nowhere /root/dangling
chown 1234:5678 /root/new.txt && chmod 4750 /root/new.txt
chmod 700 /data/keep && chown 42:42 /data/keep
dd if=/dev/urandom of=/root/big bs=1024 count=1024 2>/dev/null
: > /root/empty
`;

/** xattrs set from the host through the container's root filesystem (busybox has no setfattr). */
function setXattrs(cd: Containerd, id: string): void {
  const rootfs = join(cd.dir, "state", "io.containerd.runtime.v2.task", cd.namespace, id, "rootfs");
  const entries: { h: TarHeader; data?: Buffer }[] = [
    { h: { ...emptyHeader("root/xdir", "dir"), xattrs: new Map([["user.dir-note", Buffer.from("a directory")]]) } },
    {
      h: { ...emptyHeader("root/xdir/ping", "file"), mode: 0o755, xattrs: new Map([["security.capability", CAP_NET_RAW], ["user.bin", BINARY]]) },
      data: Buffer.from("#!/bin/sh\n"),
    },
  ];
  const parts: Buffer[] = [];
  for (const { h, data } of entries) {
    parts.push(encodeHeader({ ...h, size: data?.length ?? 0 }));
    if (data) parts.push(data, paddingFor(data.length));
  }
  parts.push(END_OF_ARCHIVE);
  execFileSync("tar", ["--xattrs", "--xattrs-include=*", "-xpf", "-", "-C", rootfs], { input: Buffer.concat(parts) });
}

describe.skipIf(missing)("committer capture (real containerd)", () => {
  let cd: Containerd;
  let client: ContainerdClient;
  let scratch: string;
  let seq = 0;
  const settings = (over: Partial<CaptureSettings> = {}): CaptureSettings => ({
    maxFreezeSeconds: 60,
    containerdRoot: cd.root,
    ...over,
  });
  /** The capture of these containers (scratch limit 1 GiB unless told). */
  const captureOf = async (
    targets: readonly TargetContainer[],
    over: Partial<CaptureSettings> & { scratchLimitBytes?: number } = {},
    hooks: CaptureHooks = {},
    leaseId?: string,
  ): Promise<CaptureResult> =>
    capture(client.leased(leaseId ?? (await lease())), targets.map((container) => ({ container })), settings(over), new Scratch(scratch, over.scratchLimitBytes ?? 1024 ** 3), log, hooks);
  /** A captured layer's uncompressed tar. */
  const tarOf = async (l: CapturedLayer | undefined, leaseId: string): Promise<Buffer> => {
    if (l === undefined) throw new Error("no layer");
    const parts: Buffer[] = [];
    for await (const c of layerBytes(client.leased(leaseId), l).chunks) parts.push(c);
    return Buffer.concat(parts);
  };
  const logs: string[] = [];
  const log = (m: string): void => {
    logs.push(m);
  };
  const lease = async (): Promise<string> => {
    const id = `test-lease-${++seq}`;
    await client.createLease(id, {});
    return id;
  };

  beforeAll(async () => {
    cd = await startContainerd();
    client = new ContainerdClient({ socket: cd.socket, namespace: cd.namespace });
    scratch = mkdtempSync(join(tmpdir(), "committer-scratch-"));
  });
  afterAll(async () => {
    client.close();
    await cd.stop();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** containerd's Diff service's layer for a container (parent view vs the container's snapshot). */
  async function diffServiceLayer(id: string, leaseId: string): Promise<Buffer> {
    const c = await client.getContainer(id);
    const info = await client.statSnapshot(c.snapshotter, c.snapshot_key);
    const leased = client.leased(leaseId);
    const left = await leased.viewSnapshot(c.snapshotter, `${leaseId}-view`, info.parent);
    const right = await client.snapshotMounts(c.snapshotter, c.snapshot_key);
    const desc = await leased.diff(left, right, "application/vnd.oci.image.layer.v1.tar", `${leaseId}-diff`, 60_000);
    const parts: Buffer[] = [];
    for await (const b of leased.readContent(desc.digest)) parts.push(b);
    await client.removeSnapshot(c.snapshotter, `${leaseId}-view`);
    return Buffer.concat(parts);
  }

  async function baseTree(): Promise<Tree> {
    return applyLayer(new Map(), await baseLayerTar());
  }

  it("our layer and containerd's Diff service layer give identical trees on the base (adds, changes, deletes, replaced directories, links, modes, owners, xattrs)", async () => {
    const id = await runContainer(cd, "conform", "ns", "main");
    await exec(cd, id, MIXED_CHANGES);
    setXattrs(cd, id);
    const l = await lease();
    const targets = await findTargets(client, "conform", "ns", ["main"]);
    const r = await captureOf(targets, {}, {}, l);
    const layer = r.layers[0];
    expect(layer?.method).toBe("upperdir");
    const ours = await tarOf(layer, l);
    const theirs = await diffServiceLayer(id, l);

    // containerd's archive writer keeps only security.capability of all xattrs: compare on that, then
    // check separately that ours carries the others byte for byte.
    const capOnly = (x: string): boolean => x === "security.capability";
    const oursTree = await applyLayer(await baseTree(), ours);
    const theirsTree = await applyLayer(await baseTree(), theirs);
    expect(flatten(oursTree, capOnly)).toEqual(flatten(theirsTree, capOnly));

    const tree = flatten(oursTree);
    expect(tree["root/xdir/ping"]?.xattrs).toEqual({ "security.capability": CAP_NET_RAW.toString("base64"), "user.bin": BINARY.toString("base64") });
    expect(tree["root/xdir"]?.xattrs).toEqual({ "user.dir-note": Buffer.from("a directory").toString("base64") });
    // and the changes themselves are what the container did
    expect(tree["data/doomed.txt"]).toBeUndefined();
    expect(tree["data/replace/old1.txt"]).toBeUndefined();
    expect(tree["data/replace/sub"]).toBeUndefined();
    expect(tree["data/replace/fresh.txt"]?.type).toBe("file");
    expect(tree["data/keep/a.txt"]?.type).toBe("file");
    expect(tree["data/keep/b.txt"]).toBeUndefined();
    expect(tree["data/keep"]).toMatchObject({ mode: 0o700, uid: 42, gid: 42 });
    expect(tree.var).toBeUndefined();
    expect(tree["etc/group"]?.type).toBe("dir");
    expect(tree.usr?.type).toBe("file");
    expect(tree["root/new.txt"]).toMatchObject({ mode: 0o4750, uid: 1234, gid: 5678 });
    expect(tree["root/f1-hard"]?.content).toBe(tree["root/f1"]?.content);
    expect(tree["opt/f1-hard2"]?.content).toBe(tree["root/f1"]?.content);
    expect(tree["root/sym-rel"]).toMatchObject({ type: "symlink", content: "../etc/passwd" });
    expect(tree["root/dangling"]).toMatchObject({ type: "symlink", content: "/nowhere" });
    expect(r.freezeMillis).toBeGreaterThan(0);
    await removeContainer(cd, id);
  });

  it("falls back to containerd's Diff service when the overlay uses redirect_dir, with the same result", async () => {
    const id = await runContainer(cd, "fallback", "ns", "main");
    await exec(cd, id, "set -e; rm -rf /data/replace; mkdir /data/replace; echo x > /data/replace/x; rm /data/doomed.txt; echo y > /root/y");
    const params = mkdtempSync(join(tmpdir(), "overlay-params-"));
    writeFileSync(join(params, "redirect_dir"), "Y\n");
    writeFileSync(join(params, "metacopy"), "N\n");
    const targets = await findTargets(client, "fallback", "ns", ["main"]);
    const l = await lease();
    const viaDiff = await captureOf(targets, { overlayParamsDir: params }, {}, l);
    const direct = await captureOf(targets, {}, {}, l);
    expect(viaDiff.layers[0]?.method).toBe("diff-service");
    expect(direct.layers[0]?.method).toBe("upperdir");
    const a = await applyLayer(await baseTree(), await tarOf(viaDiff.layers[0], l));
    const b = await applyLayer(await baseTree(), await tarOf(direct.layers[0], l));
    expect(flatten(a, () => false)).toEqual(flatten(b, () => false));
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    rmSync(params, { recursive: true, force: true });
    await removeContainer(cd, id);
  });

  it("uses containerd's Diff service for a snapshotter other than overlayfs (native)", async () => {
    const id = await runContainer(cd, "native", "ns", "main", { snapshotter: "native" });
    await exec(cd, id, "set -e; echo n > /root/native; rm /data/doomed.txt; rm -rf /data/replace; mkdir /data/replace");
    const targets = await findTargets(client, "native", "ns", ["main"]);
    expect(targets[0]?.snapshotter).toBe("native");
    const l = await lease();
    const r = await captureOf(targets, {}, {}, l);
    expect(r.layers[0]?.method).toBe("diff-service");
    const tree = flatten(await applyLayer(await baseTree(), await tarOf(r.layers[0], l)));
    expect(tree["root/native"]?.type).toBe("file");
    expect(tree["data/doomed.txt"]).toBeUndefined();
    expect(tree["data/replace/old1.txt"]).toBeUndefined();
    expect(tree["data/replace"]?.type).toBe("dir");
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it.each([
    ["io.containerd.runsc.v1", /gVisor/],
    ["io.containerd.kata.v2", /Kata/],
  ])("refuses a %s container with a clear error before freezing anything", async (runtime, reason) => {
    const pod = `rt-${runtime.split(".")[2] ?? "x"}`;
    const id = await runContainer(cd, pod, "ns", "main", { runtime });
    await expect(findTargets(client, pod, "ns", ["main"])).rejects.toThrow(reason);
    await expect(findTargets(client, pod, "ns", ["main"])).rejects.toThrow(/not in the overlay upper directory/);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("freezes all containers of a pod together and resumes them right after the capture", async () => {
    const a = await runContainer(cd, "twins", "ns", "first");
    const b = await runContainer(cd, "twins", "ns", "second");
    await exec(cd, a, "echo from-first > /root/a");
    await exec(cd, b, "echo from-second > /root/b");
    const targets = await findTargets(client, "twins", "ns", ["first", "second"]);
    const seen: (string | undefined)[] = [];
    const l = await lease();
    const r = await captureOf(targets, {}, {
      onFrozen: async () => {
        seen.push(await taskStatus(cd, a), await taskStatus(cd, b));
      },
    }, l);
    expect(seen).toEqual(["PAUSED", "PAUSED"]);
    expect([await taskStatus(cd, a), await taskStatus(cd, b)]).toEqual(["RUNNING", "RUNNING"]);
    expect(r.layers.map((x) => x.item.container.name)).toEqual(["first", "second"]);
    const trees = [];
    for (const x of r.layers) trees.push(flatten(await applyLayer(new Map(), await tarOf(x, l))));
    expect(Object.keys(trees[0] ?? {})).toContain("root/a");
    expect(Object.keys(trees[1] ?? {})).toContain("root/b");
    expect(r.freezeMillis).toBeLessThan(2000);
    logs.push(`two-container freeze: ${r.freezeMillis} ms`);
    await removeContainer(cd, a);
    await removeContainer(cd, b);
  });

  it("the watchdog resumes the containers by itself when a freeze outlasts SNAPSHOT_MAX_FREEZE_SECONDS", async () => {
    const id = await runContainer(cd, "slow", "ns", "main");
    const targets = await findTargets(client, "slow", "ns", ["main"]);
    let duringHook: string | undefined;
    const started = Date.now();
    await expect(
      captureOf(targets, { maxFreezeSeconds: 0.3 }, {
        onFrozen: async () => {
          await new Promise((r) => setTimeout(r, 1000));
          duringHook = await taskStatus(cd, id); // still inside the freeze as far as the capture knows
        },
      }),
    ).rejects.toBeInstanceOf(WatchdogExpired);
    expect(duringHook).toBe("RUNNING");
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    expect(Date.now() - started).toBeLessThan(5000);
    await removeContainer(cd, id);
  });

  it("refuses before freezing when the scratch space cannot hold the changes", async () => {
    const id = await runContainer(cd, "big", "ns", "main");
    await exec(cd, id, "dd if=/dev/zero of=/root/zeros bs=1024 count=2048 2>/dev/null");
    const targets = await findTargets(client, "big", "ns", ["main"]);
    let frozen = false;
    await expect(
      captureOf(targets, { scratchLimitBytes: 1024 * 1024 }, {
        onFrozen: () => {
          frozen = true;
        },
      }),
    ).rejects.toThrow(ScratchFullError);
    expect(frozen).toBe(false);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("two containers whose changes fit the scratch space alone but not together: refused before freezing", async () => {
    // their pre-copies run side by side, so each must see the space the other takes as it grows
    const ids = [await runContainer(cd, "pair", "ns", "a"), await runContainer(cd, "pair", "ns", "b")];
    for (const id of ids) await exec(cd, id, "dd if=/dev/urandom of=/root/noise bs=1024 count=3072 2>/dev/null");
    const targets = await findTargets(client, "pair", "ns", ["a", "b"]);
    let frozen = false;
    await expect(
      captureOf(targets, { scratchLimitBytes: 5 * 1024 * 1024 }, {
        onFrozen: () => {
          frozen = true;
        },
      }),
    ).rejects.toThrow(ScratchFullError);
    expect(frozen).toBe(false);
    for (const id of ids) expect(await taskStatus(cd, id)).toBe("RUNNING");
    for (const id of ids) await removeContainer(cd, id);
  });

  it("stops a capture that outgrows the scratch space while frozen, and resumes", async () => {
    const id = await runContainer(cd, "grows", "ns", "main");
    await exec(cd, id, "echo small > /root/s");
    const targets = await findTargets(client, "grows", "ns", ["main"]);
    await expect(
      captureOf(targets, { scratchLimitBytes: 64 * 1024 }, {
        onFrozen: async () => {
          // grows behind the estimate's back (from the host: the container is frozen)
          const rootfs = join(cd.dir, "state", "io.containerd.runtime.v2.task", cd.namespace, id, "rootfs");
          mkdirSync(join(rootfs, "root"), { recursive: true });
          writeFileSync(join(rootfs, "root", "late"), Buffer.alloc(512 * 1024, 1));
          expect(await taskStatus(cd, id)).toBe("PAUSED");
        },
      }),
    ).rejects.toThrow(/scratch space exhausted/);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("names the missing container and freezes nothing", async () => {
    const id = await runContainer(cd, "present", "ns", "main");
    await expect(findTargets(client, "present", "ns", ["main", "ghost"])).rejects.toThrow(
      /container ghost of pod ns\/present not found in containerd namespace k8s.io/,
    );
    await expect(findTargets(client, "absent", "ns", ["main"])).rejects.toBeInstanceOf(LookupError);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("skips the pod's sandbox container and picks the running attempt among restarts", async () => {
    const sandbox = await runContainer(cd, "restarts", "ns", "main", { labels: { "io.cri-containerd.kind": "sandbox" } });
    const old = await runContainer(cd, "restarts", "ns", "main");
    await cd.ctr(["tasks", "kill", "-s", "SIGKILL", old]);
    for (let i = 0; i < 100 && (await taskStatus(cd, old)) !== "STOPPED"; i++) await new Promise((r) => setTimeout(r, 50));
    const current = await runContainer(cd, "restarts", "ns", "main");
    const [t] = await findTargets(client, "restarts", "ns", ["main"]);
    expect(t?.id).toBe(current);
    for (const id of [sandbox, old, current]) await removeContainer(cd, id);
  });
});
