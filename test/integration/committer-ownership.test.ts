// One owner per freeze, on a real containerd with a real registry: a second commit of the same pod
// waits for the first instead of resuming what the first is still reading; a container paused by a
// user is neither snapshotted nor resumed; a resume by someone else during the capture fails the
// commit instead of pushing a torn image; a SIGKILLed commit's freeze is resumed only by the unpause
// of the same snapshot (SNAPSHOT_UID), and a stale record of a commit that ended is replaced. The pod's
// other running containers are paused with the captured ones and resumed with them.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../src/committer/cli.js";
import { commit } from "../../src/committer/commit.js";
import { parseInvocation, type Invocation } from "../../src/committer/config.js";
import { recordId, recordLabels } from "../../src/committer/ownership.js";
import { ContainerdClient } from "../../src/containerd/client.js";
import { missingComponents } from "../support/components.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { rejection, startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["containerd", "runc", "ctr", "tar", "docker-registry"]);
const CLI = fileURLToPath(new URL("../../src/committer/cli.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

describe.skipIf(missing)("committer: one owner per freeze (real containerd + registry)", () => {
  let cd: Containerd;
  let reg: TestRegistry;
  let work: string;
  let client: ContainerdClient;
  let n = 0;
  const quiet = { stdout: (): void => undefined, stderr: (): void => undefined };
  const log = { info: (): void => undefined, warn: (): void => undefined };

  beforeAll(async () => {
    [cd, reg] = await Promise.all([startContainerd(), startRegistry()]);
    work = mkdtempSync(join(tmpdir(), "committer-ownership-"));
    client = new ContainerdClient({ socket: cd.socket, namespace: cd.namespace });
  });
  afterAll(async () => {
    client.close();
    await cd.stop();
    await reg.close();
    rmSync(work, { recursive: true, force: true });
  });

  const env = (uid: string, over: Record<string, string> = {}): Record<string, string> => {
    const dir = mkdtempSync(join(work, "run-"));
    return {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      CONTAINERD_SOCKET: cd.socket,
      CONTAINERD_ROOT: cd.root,
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_SCRATCH_DIR: dir,
      SNAPSHOT_RESULT_PATH: join(dir, "result.json"),
      SNAPSHOT_UID: uid,
      ...over,
    };
  };
  const ref = (repo: string, tag: string): string => `${reg.host}/snapshots/${repo}:${tag}`;
  const commitInvocation = (pod: string, image: string, uid: string): Extract<Invocation, { mode: "commit" }> => {
    const p = parseInvocation([pod, "ns", `main:${image}`], env(uid));
    if (!p.ok || p.value.mode !== "commit") throw new Error("bad invocation");
    return p.value;
  };
  const commitAs = async (pod: string, image: string, uid: string, hooks: Parameters<typeof commit>[4]["hooks"] = {}): ReturnType<typeof commit> => {
    const inv = commitInvocation(pod, image, uid);
    return commit(inv.pod, inv.namespace, inv.targets, inv.settings, { client, log, hooks });
  };
  async function manifestAbsent(repo: string, tag: string): Promise<void> {
    const e = await rejection(reg.client().getManifest(`snapshots/${repo}`, tag));
    expect(e.kind).toBe("not-found");
  }

  it("a second commit of the same pod waits for the first, so the first's capture is never resumed under it", async () => {
    const id = await runContainer(cd, "twice", "ns", "main");
    await exec(cd, id, "echo one > /root/one");
    const events: string[] = [];
    let statusAtEndOfA: string | undefined;
    let b: ReturnType<typeof commit> | undefined;
    const a = commitAs("twice", ref("twice", "a"), "uid-a", {
      onFrozen: async () => {
        events.push("A frozen");
        b = commitAs("twice", ref("twice", "b"), "uid-b", {
          onFrozen: () => {
            events.push("B frozen");
          },
        });
        // while A reads, B has every chance to pause and resume the container
        await new Promise((r) => setTimeout(r, 1500));
        statusAtEndOfA = await taskStatus(cd, id);
        events.push("A done reading");
      },
      beforePush: () => {
        events.push("A resumed");
      },
    });
    const ra = await a;
    const rb = await (b ?? Promise.reject(new Error("B never started")));
    expect(statusAtEndOfA).toBe("PAUSED");
    expect(events).toEqual(["A frozen", "A done reading", "A resumed", "B frozen"]);
    expect(ra.containers[0]?.digest).toMatch(/^sha256:/);
    expect(rb.containers[0]?.digest).toMatch(/^sha256:/);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("a container the user paused is not snapshotted and stays paused; the error says why", async () => {
    const id = await runContainer(cd, "userpaused", "ns", "main");
    await cd.ctr(["tasks", "pause", id]);
    await expect(commitAs("userpaused", ref("userpaused", "t"), "uid-u")).rejects.toThrow(
      /container main is paused, not by a commit \(no freeze record: paused by a user or another tool\).*left paused and not snapshotted/,
    );
    expect(await taskStatus(cd, id)).toBe("PAUSED");
    await manifestAbsent("userpaused", "t");
    // the unpause Job of a snapshot does not resume it either
    const u = await run(["unpause", "userpaused", "ns", "main"], env("uid-u"), quiet);
    expect(u).toBe(0);
    expect(await taskStatus(cd, id)).toBe("PAUSED");
    await cd.ctr(["tasks", "resume", id]);
    await removeContainer(cd, id);
  });

  it("a resume by someone else during the capture fails the commit (torn capture) and pushes nothing", async () => {
    const id = await runContainer(cd, "torn", "ns", "main");
    await expect(
      commitAs("torn", ref("torn", "t"), "uid-t", {
        onFrozen: async () => {
          await cd.ctr(["tasks", "resume", id]);
          await exec(cd, id, "echo during > /root/during");
        },
      }),
    ).rejects.toThrow(/freeze was broken.*container main was resumed by someone else during the freeze/);
    await manifestAbsent("torn", "t");
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });

  it("pauses the pod's other running containers with the captured one, and only those of that pod", async () => {
    // a sidecar not captured could otherwise change the captured container's files during the freeze
    // (through /proc/<pid>/root when the pod shares its process namespace, or as an ephemeral container)
    const main = await runContainer(cd, "withside", "ns", "main");
    const side = await runContainer(cd, "withside", "ns", "sidecar");
    const elsewhere = await runContainer(cd, "otherpod", "ns", "sidecar");
    await exec(cd, main, "echo data > /root/data");
    const seen: (string | undefined)[] = [];
    const out = await commitAs("withside", ref("withside", "1"), "uid-side", {
      onFrozen: async () => {
        seen.push(...(await Promise.all([main, side, elsewhere].map((id) => client.taskStatus(id)))));
      },
    });
    expect(seen).toEqual(["PAUSED", "PAUSED", "RUNNING"]);
    expect(out.containers.map((c) => c.name)).toEqual(["main"]);
    expect(await Promise.all([main, side, elsewhere].map((id) => taskStatus(cd, id)))).toEqual(["RUNNING", "RUNNING", "RUNNING"]);
    // a sidecar the user paused stays paused and does not stop the commit (it cannot write anyway)
    await cd.ctr(["tasks", "pause", side]);
    const again = await commitAs("withside", ref("withside", "2"), "uid-side2");
    expect(again.containers[0]?.digest).toMatch(/^sha256:/);
    expect(await taskStatus(cd, side)).toBe("PAUSED");
    expect(await taskStatus(cd, main)).toBe("RUNNING");
    await cd.ctr(["tasks", "resume", side]);
    for (const id of [main, side, elsewhere]) await removeContainer(cd, id);
  });

  it("a SIGKILLed commit's freeze: another snapshot's commit and unpause leave it frozen, its own snapshot's unpause resumes it", async () => {
    const id = await runContainer(cd, "killed", "ns", "main");
    // paused with it, not captured: resumed by the same unpause
    const side = await runContainer(cd, "killed", "ns", "sidecar");
    // Something to read under the freeze: with an empty upper directory no tar runs at all, the freeze
    // lasts milliseconds, and this test would race the commit's own resume (which it lost now and then:
    // the commit finished unseen, or the SIGKILL came after the resume was sent).
    await exec(cd, id, "echo data > /root/data");
    const slowTar = join(work, "slow-tar");
    writeFileSync(slowTar, '#!/bin/sh\nsleep 60\nexec tar "$@"\n');
    chmodSync(slowTar, 0o755);
    const t0 = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "killed", "ns", `main:${ref("killed", "k")}`], {
      cwd: REPO_ROOT,
      // a short watchdog bound, so its record goes stale soon (the watchdog dies with the process); the
      // window in which the test sees the container paused is the bound minus the pause call's time
      env: env("uid-killed", { IMAGE_COMMITTER_TAR: slowTar, SNAPSHOT_MAX_FREEZE_SECONDS: "5", SNAPSHOT_PRECOPY_PASSES: "0" }),
      stdio: ["ignore", "ignore", "pipe"],
    });
    // the child's log with the time of each line, so that a failure explains itself
    let childLog = "";
    child.stderr.on("data", (b: Buffer) => (childLog += `+${Date.now() - t0} ms ${b.toString()}`));
    let exit: string | undefined;
    const exited = new Promise<void>((r) =>
      child.on("close", (code, signal) => {
        exit = `exit ${code ?? signal ?? "?"} at +${Date.now() - t0} ms`;
        r();
      }),
    );
    const why = (what: string): string => `${what}; child ${exit ?? "still running"}; its log:\n${childLog}`;
    // bounded by the child's progress, not a start-up budget (tsx start-up takes seconds on a loaded machine)
    for (;;) {
      if ((await client.taskStatus(id)) === "PAUSED") break;
      if (exit !== undefined) throw new Error(why("the commit ended without freezing the container"));
      if (Date.now() - t0 > 120_000) {
        child.kill("SIGKILL");
        throw new Error(why("the commit did not freeze the container within 120 s"));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    child.kill("SIGKILL");
    await exited;
    expect(await taskStatus(cd, id), why("after the SIGKILL")).toBe("PAUSED");
    expect(await taskStatus(cd, side), why("the sidecar after the SIGKILL")).toBe("PAUSED");

    // the other commit waits while the killed one's record is within its bound, then refuses
    const other = env("uid-other");
    expect(await run(["killed", "ns", `main:${ref("killed", "o")}`], other, quiet)).toBe(1);
    const { readFileSync } = await import("node:fs");
    const err = (JSON.parse(readFileSync(other.SNAPSHOT_RESULT_PATH ?? "", "utf8")) as { error: string }).error;
    expect(err).toMatch(/frozen by the commit of snapshot uid-killed, which stopped without resuming it.*SNAPSHOT_UID=uid-killed/);
    expect(await taskStatus(cd, id)).toBe("PAUSED");
    expect(await run(["unpause", "killed", "ns", "main"], env("uid-other"), quiet)).toBe(0);
    expect(await taskStatus(cd, id)).toBe("PAUSED");
    expect(await taskStatus(cd, side)).toBe("PAUSED");

    expect(await run(["unpause", "killed", "ns", "main"], env("uid-killed"), quiet)).toBe(0);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    expect(await taskStatus(cd, side)).toBe("RUNNING");
    expect(await client.listLeases([`id==${recordId(id)}`])).toEqual([]);
    expect(await client.listLeases([`id==${recordId(side)}`])).toEqual([]);
    // and the pod can be snapshotted again
    const again = await commitAs("killed", ref("killed", "again"), "uid-again");
    expect(again.containers[0]?.digest).toMatch(/^sha256:/);
    await removeContainer(cd, id);
    await removeContainer(cd, side);
  }, 240_000);

  it("replaces the stale record of a commit that ended after its resume without deleting it", async () => {
    const id = await runContainer(cd, "stale", "ns", "main");
    await client.createLease(recordId(id), recordLabels(id, "uid-gone", "tok-gone", Date.now() - 1000));
    const r = await commitAs("stale", ref("stale", `t${++n}`), "uid-s");
    expect(r.containers[0]?.digest).toMatch(/^sha256:/);
    expect(await client.listLeases([`id==${recordId(id)}`])).toEqual([]);
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    await removeContainer(cd, id);
  });
});
