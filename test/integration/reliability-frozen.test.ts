// Reliability: "never left frozen". The committer (its real CLI, as its own process) is killed with
// SIGTERM and with SIGKILL at each of its steps, on real containerd with a real registry:
//   after-pause    containers paused, capture not started (a tar wrapper sleeps before running tar)
//   mid-capture    tar has produced its first 256 KiB and is held (the wrapper pauses its output)
//   after-resume   the freeze is over: compressing, or at the first registry calls (held by a proxy)
//   mid-push       a blob upload is held by a proxy in front of the registry
//   before-result  the registry stored the manifest, its answer is held: the result is not written
// with randomised delays after each point. After SIGTERM the committer must resume by itself; after
// SIGKILL `image-committer unpause` (what the controller's unpause Job runs) must. Every container ends
// RUNNING with its files intact; the frozen time (first PAUSED seen → RUNNING seen, polled every few
// ms through containerd) is recorded per case. Also: a hung capture (watchdog), and containerd lost
// while frozen — restarted within and after the committer's resume retries.
// Short form: one trial per case. RELIABILITY_FULL=1: RELIABILITY_TRIALS (default 5) per case.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerdClient } from "../../src/containerd/client.js";
import { missingComponents } from "../support/components.js";
import { STARTUP_BUDGET_MS } from "../support/budgets.js";
import { exec, removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { startDelayProxy, type DelayProxy } from "../support/delay-proxy.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["containerd", "runc", "ctr", "docker-registry", "tar", "dd"]);

const FULL = process.env.RELIABILITY_FULL === "1";
const TRIALS = FULL ? Number(process.env.RELIABILITY_TRIALS ?? 5) : 1;
const CLI = fileURLToPath(new URL("../../src/committer/cli.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POD = "frozen";
const NS = "ns";
/** Task status polling interval (each poll is a Tasks.Get, i.e. a `runc state` in the shim). */
const POLL_MS = Number(process.env.RELIABILITY_POLL_MS ?? 20);

type Step = "after-pause" | "mid-capture" | "after-resume" | "mid-push" | "before-result";
const STEPS: Step[] = ["after-pause", "mid-capture", "after-resume", "mid-push", "before-result"];
type Sig = "SIGTERM" | "SIGKILL";

interface TrialResult {
  step: Step;
  signal: Sig;
  delayMs: number;
  exitCode: number | null;
  /** Status when the signal was sent. */
  statusAtKill: string;
  frozenMs: number;
  /** Who resumed: the committer itself, or the unpause command, or nobody needed (already running). */
  resumedBy: "committer" | "unpause" | "not-frozen";
}

const results: TrialResult[] = [];
const extra: Record<string, unknown> = {};

/** Polls task status through containerd every few ms; remembers the first PAUSED and the RUNNING after it. */
class FreezeMonitor {
  private stopped = false;
  private loop: Promise<void>;
  status = "UNKNOWN";
  pausedAt: number | undefined;
  runningAgainAt: number | undefined;
  sawPaused = false;
  constructor(
    private readonly client: () => ContainerdClient,
    private readonly id: string,
  ) {
    this.loop = this.run();
  }
  private async run(): Promise<void> {
    while (!this.stopped) {
      let s: string;
      try {
        // bounded: a call that hangs must not freeze the monitor's view
        s = await Promise.race([
          this.client().taskStatus(this.id).then((v) => v ?? "NONE"),
          new Promise<string>((r) => setTimeout(() => {
            r("SLOW");
          }, 1_000)),
        ]);
      } catch {
        s = "UNREACHABLE";
      }
      const now = performance.now();
      this.status = s;
      if (s === "PAUSED" || s === "PAUSING") {
        if (!this.sawPaused) this.pausedAt = now;
        this.sawPaused = true;
        this.runningAgainAt = undefined;
      } else if (s === "RUNNING" && this.sawPaused && this.runningAgainAt === undefined) {
        this.runningAgainAt = now;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }
  async until(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (!pred()) {
      if (performance.now() > end) throw new Error(`timed out waiting for ${what} (status ${this.status})`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  frozenMs(): number {
    if (this.pausedAt === undefined) return 0;
    return Math.round((this.runningAgainAt ?? performance.now()) - this.pausedAt);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

const rand = (max: number): number => Math.floor(Math.random() * (max + 1));

describe.skipIf(missing)("reliability: the committer never leaves a container frozen (real containerd + registry)", () => {
  let cd: Containerd;
  let reg: TestRegistry;
  let proxy: DelayProxy;
  let work: string;
  let client: ContainerdClient;
  let id: string;
  let tarWrapper: string;
  let checksum: string;
  let n = 0;
  let containerdProc: ChildProcess | undefined;

  const newClient = (): ContainerdClient => new ContainerdClient({ socket: cd.socket, namespace: cd.namespace });

  beforeAll(async () => {
    [cd, reg] = await Promise.all([startContainerd(), startRegistry()]);
    proxy = await startDelayProxy(reg.host);
    work = mkdtempSync(join(tmpdir(), "reliability-frozen-"));
    client = newClient();
    // A tar that can be held before it starts (REL_BEFORE seconds) or after its first 256 KiB (REL_MID
    // seconds, REL_MARK touched when held). Settings reach it through the committer's environment.
    tarWrapper = join(work, "tar-wrapper");
    writeFileSync(
      tarWrapper,
      [
        "#!/bin/sh",
        'sleep "${REL_BEFORE:-0}"',
        'if [ "${REL_MID:-0}" = "0" ]; then exec tar "$@"; fi',
        'tar "$@" | { dd bs=262144 count=1 iflag=fullblock 2>/dev/null; touch "$REL_MARK"; sleep "$REL_MID"; cat; }',
        "",
      ].join("\n"),
    );
    chmodSync(tarWrapper, 0o755);
    id = await runContainer(cd, POD, NS, "main");
    // 8 MiB of random data (compression takes a while after the resume) and a file to check
    await exec(cd, id, "set -e; dd if=/dev/urandom of=/root/big bs=1048576 count=8 2>/dev/null; echo keep-me > /root/keep.txt; mkdir -p /work && echo w > /work/f");
    checksum = (await exec(cd, id, "md5sum /root/big /root/keep.txt /work/f")).trim();
  });
  afterAll(async () => {
    client.close();
    await removeContainer(cd, id).catch(() => undefined);
    await proxy.close();
    await cd.stop();
    containerdProc?.kill("SIGKILL");
    await reg.close();
    rmSync(work, { recursive: true, force: true });
    const summary = summarise();
    console.log(`[reliability] never frozen: ${JSON.stringify({ trials: results.length, perCase: summary, ...extra })}`);
  });

  function summarise(): Record<string, { trials: number; worstFrozenMs: number; exitCodes: (number | null)[]; resumedBy: string[] }> {
    const out: Record<string, { trials: number; worstFrozenMs: number; exitCodes: (number | null)[]; resumedBy: string[] }> = {};
    for (const r of results) {
      const k = `${r.step} ${r.signal}`;
      const e = (out[k] ??= { trials: 0, worstFrozenMs: 0, exitCodes: [], resumedBy: [] });
      e.trials++;
      e.worstFrozenMs = Math.max(e.worstFrozenMs, r.frozenMs);
      if (!e.exitCodes.includes(r.exitCode)) e.exitCodes.push(r.exitCode);
      if (!e.resumedBy.includes(r.resumedBy)) e.resumedBy.push(r.resumedBy);
    }
    return out;
  }

  function spawnCli(args: string[], env: Record<string, string>): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
    const dir = mkdtempSync(join(work, "run-"));
    const logPath = join(dir, "output.log");
    const fd = openSync(logPath, "a");
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CLI, ...args],
      {
        cwd: REPO_ROOT,
        stdio: ["ignore", fd, fd],
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          CONTAINERD_SOCKET: cd.socket,
          CONTAINERD_ROOT: cd.root,
          SNAPSHOT_REGISTRY_INSECURE: "true",
          SNAPSHOT_SCRATCH_DIR: dir,
          SNAPSHOT_RESULT_PATH: join(dir, "result.json"),
          SNAPSHOT_UID: `uid-frozen-${++n}`,
          SNAPSHOT_MAX_FREEZE_SECONDS: "60",
          IMAGE_COMMITTER_TAR: tarWrapper,
          // the wrapper holds tar to hold the freeze: every entry must be read while frozen
          SNAPSHOT_PRECOPY_PASSES: "0",
          ...env,
        },
      },
    );
    closeSync(fd);
    const out = (): string => {
      try {
        return readFileSync(logPath, "utf8");
      } catch {
        return "";
      }
    };
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => {
      resolve(code);
    }));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    void exited.then(() => {
      clearTimeout(timer);
    });
    return { child, exited, output: out };
  }

  /** The controller's unpause Job: same snapshot UID as the commit it cleans up after. */
  async function unpauseCommand(uid: string): Promise<void> {
    const u = spawnCli(["unpause", POD, NS, "main"], { SNAPSHOT_UID: uid });
    const code = await u.exited;
    expect(code, u.output()).toBe(0);
  }

  async function expectIntact(): Promise<void> {
    expect(await taskStatus(cd, id)).toBe("RUNNING");
    expect((await exec(cd, id, "md5sum /root/big /root/keep.txt /work/f")).trim()).toBe(checksum);
  }

  async function trial(step: Step, signal: Sig): Promise<TrialResult> {
    proxy.reset();
    const mark = join(work, `mark-${++n}`);
    const uid = `uid-trial-${n}`;
    const env: Record<string, string> = { REL_MARK: mark, SNAPSHOT_UID: uid };
    if (step === "after-pause") env.REL_BEFORE = "5";
    if (step === "mid-capture") env.REL_MID = "5";
    // after the resume: compression, then the first registry calls (held, so the kill lands before any upload)
    if (step === "after-resume") proxy.rules = [{ method: "HEAD", path: /\/blobs\//, beforeMs: 3_000 }, { method: "POST", path: /\/blobs\/uploads\//, beforeMs: 3_000 }];
    if (step === "mid-push") proxy.rules = [{ method: "PUT", path: /\/blobs\/uploads\//, beforeMs: 5_000 }];
    if (step === "before-result") proxy.rules = [{ method: "PUT", path: /\/manifests\//, afterMs: 5_000 }];
    const monitor = new FreezeMonitor(() => client, id);
    const cli = spawnCli([POD, NS, `main:${proxy.host}/snapshots/frozen:t${n}`], env);
    let delayMs = 0;
    try {
      const alive = (): boolean => cli.child.exitCode === null && cli.child.signalCode === null;
      switch (step) {
        case "after-pause":
          await monitor.until(() => monitor.sawPaused, "the pause");
          delayMs = rand(300);
          break;
        case "mid-capture":
          await monitor.until(() => existsSync(mark), "tar to be held mid-stream");
          delayMs = rand(300);
          break;
        case "after-resume":
          // (a freeze shorter than one poll is only seen in the committer's log line)
          await monitor.until(() => monitor.runningAgainAt !== undefined || /captured \d+ bytes/.test(cli.output()), "the resume");
          delayMs = rand(300);
          break;
        case "mid-push":
          await proxy.when("PUT", /\/blobs\/uploads\//);
          delayMs = rand(400);
          break;
        case "before-result":
          await proxy.when("PUT", /\/manifests\//, true);
          delayMs = rand(300);
          break;
      }
      await new Promise((r) => setTimeout(r, delayMs));
      expect(alive(), `committer finished before the ${step} kill: ${cli.output()}`).toBe(true);
      // a fresh look (the monitor's last poll may be up to one interval old); PAUSING counts as frozen
      const raw = (await client.taskStatus(id)) ?? "NONE";
      const statusAtKill = raw === "PAUSING" ? "PAUSED" : raw;
      cli.child.kill(signal);
      const exitCode = await cli.exited;
      let resumedBy: TrialResult["resumedBy"] = statusAtKill === "PAUSED" ? "committer" : "not-frozen";
      if (signal === "SIGTERM") {
        expect(exitCode, cli.output()).toBe(143);
        // the committer resumed before exiting: RUNNING now, without any help
        await monitor.until(() => monitor.status === "RUNNING", "RUNNING after SIGTERM", 2_000);
      } else {
        if (monitor.status !== "RUNNING") {
          resumedBy = "unpause";
          await unpauseCommand(uid);
        } else {
          // not frozen when killed; the unpause Job still runs and must be harmless
          await unpauseCommand(uid);
        }
        await monitor.until(() => monitor.status === "RUNNING", "RUNNING after unpause", 5_000);
      }
      await monitor.stop();
      await expectIntact();
      const r: TrialResult = { step, signal, delayMs, exitCode, statusAtKill, frozenMs: monitor.frozenMs(), resumedBy };
      results.push(r);
      return r;
    } catch (e) {
      throw new Error(`${step} ${signal}: ${e instanceof Error ? e.message : String(e)}\ncommitter output:\n${cli.output()}\nproxy: ${JSON.stringify(proxy.log.slice(-10))}`);
    } finally {
      await monitor.stop();
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill("SIGKILL");
      proxy.rules = [];
    }
  }

  for (const step of STEPS) {
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      it(`${signal} ${step}: containers end RUNNING with their files (${TRIALS} trial${TRIALS > 1 ? "s" : ""})`, async () => {
        for (let i = 0; i < TRIALS; i++) {
          const r = await trial(step, signal);
          if (step === "after-pause" || step === "mid-capture") expect(r.statusAtKill).toBe("PAUSED");
          if (step === "mid-push" || step === "before-result") expect(r.statusAtKill).toBe("RUNNING");
          if (signal === "SIGTERM" && r.statusAtKill === "PAUSED") expect(r.frozenMs).toBeLessThan(6_000);
        }
      }, 120_000 * TRIALS);
    }
  }

  it("a hung capture is ended by the watchdog: containers resumed after SNAPSHOT_MAX_FREEZE_SECONDS", async () => {
    const monitor = new FreezeMonitor(() => client, id);
    const started = performance.now();
    const cli = spawnCli([POD, NS, `main:${reg.host}/snapshots/frozen:dog`], { REL_BEFORE: "30", SNAPSHOT_MAX_FREEZE_SECONDS: "1" });
    const code = await cli.exited;
    await monitor.until(() => monitor.runningAgainAt !== undefined, "the watchdog's resume", 5_000);
    await monitor.stop();
    expect(code).toBe(1);
    expect(cli.output()).toMatch(/SNAPSHOT_MAX_FREEZE_SECONDS=1/);
    expect(monitor.frozenMs()).toBeGreaterThanOrEqual(900);
    expect(monitor.frozenMs()).toBeLessThan(2_500);
    extra.watchdog = { maxFreezeSeconds: 1, frozenMs: monitor.frozenMs(), committerExitedAfterMs: Math.round(performance.now() - started) };
    await expectIntact();
  }, 60_000);

  /** Stops containerd (SIGTERM to the daemon; shims and paused tasks stay), and starts it again later. */
  async function stopContainerd(): Promise<void> {
    const pid = containerdProc?.pid ?? cd.pid;
    process.kill(pid, "SIGTERM");
    const end = Date.now() + 10_000;
    while (existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z")) {
      if (Date.now() > end) throw new Error("containerd did not stop");
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  async function startContainerdAgain(): Promise<void> {
    const logFd = openSync(join(cd.dir, "containerd.log"), "a");
    containerdProc = spawn("containerd", ["--config", join(cd.dir, "config.toml")], { stdio: ["ignore", logFd, logFd] });
    const end = Date.now() + STARTUP_BUDGET_MS;
    for (;;) {
      try {
        await cd.ctr(["version"], { timeoutMs: 2000 });
        return;
      } catch {
        if (Date.now() > end) throw new Error("containerd did not come back");
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  it.each([
    ["within the committer's resume retries: the committer resumes the containers itself", 1_000, 0],
    ["after the committer gave up: the containers stay paused until the unpause command resumes them", 12_000, 1],
  ])("containerd lost mid-capture and restarted %s", async (_name, downMs, wantCode) => {
    const monitor = new FreezeMonitor(() => client, id);
    const mark = join(work, `mark-ctd-${++n}`);
    const uid = `uid-ctd-${n}`;
    const cli = spawnCli([POD, NS, `main:${reg.host}/snapshots/frozen:ctd${n}`], { REL_MID: "1", REL_MARK: mark, SNAPSHOT_UID: uid });
    await monitor.until(() => existsSync(mark), "tar to be held mid-stream");
    const lostAt = performance.now();
    await stopContainerd();
    await new Promise((r) => setTimeout(r, downMs));
    // what the committer did meanwhile
    const exitedWhileDown = cli.child.exitCode !== null;
    await startContainerdAgain();
    const restartedAfterMs = Math.round(performance.now() - lostAt);
    const code = await cli.exited;
    const statusAfterCommitter = await taskStatus(cd, id);
    let resumedBy = "committer";
    if (statusAfterCommitter !== "RUNNING") {
      resumedBy = "unpause";
      await unpauseCommand(uid);
    }
    await monitor.until(() => monitor.status === "RUNNING", "RUNNING", 10_000);
    await monitor.stop();
    extra[`containerd-lost-${wantCode === 0 ? "briefly" : "long"}`] = {
      downMs,
      restartedAfterMs,
      committerExit: code,
      exitedWhileDown,
      statusAfterCommitter,
      resumedBy,
      frozenMs: monitor.frozenMs(),
      committerSaid: cli.output().split("\n").filter((l) => /resume|failed|containerd/i.test(l)).slice(-3),
    };
    expect(code === 0 || code === 1).toBe(true);
    if (wantCode === 0) expect(resumedBy).toBe("committer");
    await expectIntact();
  }, 90_000);
});
