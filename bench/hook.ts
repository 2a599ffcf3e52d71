// Hook-server benchmark: the real server (startServer) in a child process pinned to core 0, load from
// a second process pinned to core 1 (autocannon), against a baseline measured in the same run — a
// trivial express JSON echo on the same machine, the same core and the same payload.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { which } from "../test/support/components.js";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { loadavg as osLoadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { LoadResult, LoadSpec } from "./hook-load-child.js";
import { buildPayloadTemplate } from "./hook-payloads.js";
import { summarise, type ProfileSummary } from "./profile-summary.js";
import { hasTaskset, log, niced, nodeCommand, procMemory, stopChild } from "./util.js";

export type ServerMode = "ours" | "echo";

interface Usage {
  cpuUserMicros: number;
  cpuSystemMicros: number;
  rss: number;
  heapUsed: number;
}

interface ServerChild {
  readonly mode: ServerMode;
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** stdout lines (log lines) seen since start. */
  logLines(): number;
  usage(gc?: boolean): Promise<Usage>;
  stop(): Promise<void>;
}

export async function startServerChild(mode: ServerMode, nodeFlags: string[] = []): Promise<ServerChild> {
  const [cmd, args] = nodeCommand("./hook-server-child.ts", [mode], { cpu: 0, nice: true, nodeFlags: ["--expose-gc", ...nodeFlags] });
  const child: ChildProcess = spawn(cmd, args, { stdio: ["ignore", "pipe", "inherit", "ipc"], env: { ...process.env, NODE_ENV: "production" } });
  const pid = child.pid;
  if (pid === undefined || child.stdout === null) throw new Error(`could not start the ${mode} server`);
  let lines = 0;
  const port = await new Promise<number>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    let found = false;
    rl.on("line", (l) => {
      lines++;
      if (found) return;
      try {
        const p = (JSON.parse(l) as { port?: unknown }).port;
        if (typeof p === "number") {
          found = true;
          lines = 0;
          resolve(p);
        }
      } catch {
        // a log line
      }
    });
    child.once("exit", (code) => {
      reject(new Error(`${mode} server exited with ${code ?? "?"} before listening`));
    });
    setTimeout(() => {
      reject(new Error(`${mode} server did not listen within 30 s`));
    }, 30_000).unref();
  });
  const pending: ((u: Usage) => void)[] = [];
  child.on("message", (m: Usage) => pending.shift()?.(m));
  return {
    mode,
    pid,
    port,
    url: `http://127.0.0.1:${port}`,
    logLines: () => lines,
    usage: (gc = false) =>
      new Promise<Usage>((resolve) => {
        pending.push(resolve);
        child.send({ cmd: gc ? "gc" : "usage" });
      }),
    stop: () => stopChild(child),
  };
}

interface LoadChild {
  readonly pid: number;
  run(spec: LoadSpec): Promise<LoadResult>;
  stop(): Promise<void>;
}

type LoadMessage = { ready: true } | { ok: true; result: LoadResult } | { ok: false; error: string };

export async function startLoadChild(): Promise<LoadChild> {
  const [cmd, args] = nodeCommand("./hook-load-child.ts", [], { cpu: 1, nice: true });
  const child = spawn(cmd, args, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  let waiting: ((m: LoadMessage) => void) | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    waiting = () => {
      resolve();
    };
    child.once("exit", (code) => {
      reject(new Error(`load generator exited with ${code ?? "?"}`));
    });
  });
  child.on("message", (m: LoadMessage) => {
    const w = waiting;
    waiting = undefined;
    w?.(m);
  });
  await ready;
  return {
    pid: child.pid ?? 0,
    run: (spec) =>
      new Promise<LoadResult>((resolve, reject) => {
        // bounded: a step that does not answer in time fails the benchmark instead of hanging it
        const limitMs = ((spec.durationSec ?? (spec.amount ?? 0) / 200) + 120) * 1000;
        const timer = setTimeout(() => {
          waiting = undefined;
          reject(new Error(`load generator: no answer within ${limitMs / 1000} s for ${JSON.stringify(spec)}`));
        }, limitMs);
        waiting = (m) => {
          clearTimeout(timer);
          if ("ok" in m && m.ok && m.result.requests > 0) resolve(m.result);
          else reject(new Error(`load generator: ${"error" in m ? m.error : `no answered requests for ${JSON.stringify(spec)}`}`));
        };
        child.send(spec);
      }),
    stop: () => stopChild(child),
  };
}

async function check(server: ServerChild, expectedStatus: unknown, body: string): Promise<void> {
  const res = await fetch(`${server.url}/sync`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${server.mode} server answered ${res.status}: ${text.slice(0, 500)}`);
  if (server.mode === "ours" && expectedStatus !== undefined) {
    const got = (JSON.parse(text) as { status?: unknown }).status;
    if (JSON.stringify(got) !== JSON.stringify(expectedStatus)) {
      throw new Error(`the hook's answer is not the expected fixpoint status: ${JSON.stringify(got).slice(0, 500)}`);
    }
  }
}

export interface RateRow {
  readonly rate: number;
  readonly ours: LoadResult;
  readonly echo: LoadResult;
}

export interface CpuRow {
  readonly distinct: number;
  readonly requests: number;
  readonly microsPerCall: number;
  readonly echoMicrosPerCall: number;
}

export interface HookResults {
  /** Hot spots of the server under load (full mode). */
  readonly profile: ProfileSummary | undefined;
  readonly payloadBytes: number;
  readonly pinned: boolean;
  readonly rates: RateRow[];
  readonly max: { ours: LoadResult; echo: LoadResult };
  readonly highestRateP99Under5: { ours: number | undefined; echo: number | undefined; topTried: number };
  readonly cpu: CpuRow[];
  readonly rss: {
    readonly requests: number;
    readonly seconds: number;
    readonly samples: { t: number; rss: number }[];
    readonly startRss: number;
    readonly endRss: number;
    readonly peakRss: number;
    readonly heapAfterWarmup: number;
    readonly heapAtEnd: number;
    readonly echoPeakRss: number;
    readonly load: LoadResult;
  };
  readonly logLines: number;
  /** Whether the fixed-rate steps ran under SCHED_FIFO and all processes with nice -10. */
  readonly scheduling: { fifoSteps: boolean; niced: boolean };
  /** 1-minute load average of the machine before and after (other work shares it). */
  readonly loadavg: { before: number; after: number };
}

export interface HookOptions {
  readonly quick: boolean;
  /**
   * SCHED_FIFO for the fixed-rate steps (`--realtime`). Off by default: on a busy machine it once
   * livelocked a step (server and load generator spinning under FIFO, nothing answered), so it is an
   * opt-in for a machine you have to yourself.
   */
  readonly realtime?: boolean;
}

function loadavg(): number {
  return osLoadavg()[0] ?? Number.NaN;
}

const canChrt = process.getuid?.() === 0 && which("chrt") !== undefined;

/**
 * SCHED_FIFO (all threads) for the server and the load generator during the fixed-rate steps, back to
 * SCHED_OTHER after: on a machine shared with other work this measures our code on a core it gets when
 * it needs it (like a dedicated core), not the neighbours. Fixed-rate steps only — a closed loop under
 * SCHED_FIFO would starve everything else on that core.
 */
export function realtime(pids: number[], on: boolean): boolean {
  if (!canChrt) return false;
  for (const pid of pids) {
    try {
      execFileSync("chrt", on ? ["-a", "-f", "-p", "20", String(pid)] : ["-a", "-o", "-p", "0", String(pid)], { stdio: "ignore" });
    } catch {
      return false;
    }
  }
  return true;
}

function holds(r: LoadResult, rate: number): boolean {
  return r.non2xx === 0 && r.errors === 0 && r.p99 <= 5 && r.throughput >= rate * 0.95;
}

export async function benchHookServer(opts: HookOptions): Promise<HookResults> {
  const quick = opts.quick;
  const tpl = buildPayloadTemplate();
  log(`hook: payload ${tpl.bytes} bytes per sync request; ${hasTaskset ? "server pinned to core 0, load to core 1" : "taskset missing: not pinned"}`);
  const rates = quick ? [500, 1000, 2000, 4000] : [500, 1000, 2000, 3000, 4000, 6000];
  const stepSec = quick ? 2 : 10;
  const connectionsFor = (rate: number): number => Math.max(4, Math.ceil(rate / 250));
  const servers: Record<ServerMode, ServerChild> = {
    ours: await startServerChild("ours"),
    echo: await startServerChild("echo"),
  };
  const loader = await startLoadChild();
  const load = (spec: LoadSpec): Promise<LoadResult> => loader.run(spec);
  const loadBefore = loadavg();
  try {
    for (const s of Object.values(servers)) {
      await check(s, tpl.expectedStatus, tpl.render(0));
      await check(s, undefined, tpl.render(7));
    }
    // warm-up: JIT, connection pools, ajv's compiled validators
    for (const s of Object.values(servers)) await load({ url: s.url, rate: 0, connections: 4, durationSec: quick ? 1 : 5, distinct: 100 });

    const rows: RateRow[] = [];
    let fifo = false;
    for (const rate of rates) {
      const spec = { rate, connections: connectionsFor(rate), durationSec: stepSec, distinct: 100 };
      const step = async (m: ServerMode): Promise<LoadResult> => {
        if (opts.realtime !== true) return load({ url: servers[m].url, ...spec });
        fifo = realtime([servers[m].pid, loader.pid], true);
        try {
          return await load({ url: servers[m].url, ...spec });
        } finally {
          realtime([servers[m].pid, loader.pid], false);
        }
      };
      const ours = await step("ours");
      const echo = await step("echo");
      log(`hook: ${rate} req/s → ours p50 ${ours.p50.toFixed(2)} p99 ${ours.p99.toFixed(2)} ms (${ours.throughput.toFixed(0)}/s); echo p50 ${echo.p50.toFixed(2)} p99 ${echo.p99.toFixed(2)} ms`);
      rows.push({ rate, ours, echo });
    }
    const maxSpec = { rate: 0, connections: 8, durationSec: quick ? 2 : 10, distinct: 100 };
    const max = { ours: await load({ url: servers.ours.url, ...maxSpec }), echo: await load({ url: servers.echo.url, ...maxSpec }) };
    log(`hook: max throughput ours ${max.ours.throughput.toFixed(0)}/s, echo ${max.echo.throughput.toFixed(0)}/s`);
    const highest = (m: ServerMode): number | undefined => {
      let best: number | undefined;
      for (const r of rows) if (holds(r[m], r.rate)) best = r.rate;
      return best;
    };

    // CPU per call: 100 parents' requests against 10,000 parents' (each seen once or more).
    const cpuRequests = quick ? 4_000 : 50_000;
    const cpu: CpuRow[] = [];
    for (const distinct of [100, 10_000]) {
      const per: Record<ServerMode, number> = { ours: 0, echo: 0 };
      for (const m of ["ours", "echo"] as const) {
        const s = servers[m];
        const before = await s.usage();
        const r = await load({ url: s.url, rate: 0, connections: 4, amount: cpuRequests, distinct });
        const after = await s.usage();
        per[m] = (after.cpuUserMicros + after.cpuSystemMicros - before.cpuUserMicros - before.cpuSystemMicros) / r.requests;
      }
      log(`hook: CPU per sync call with ${distinct} distinct parents: ours ${per.ours.toFixed(0)} µs, echo ${per.echo.toFixed(0)} µs`);
      cpu.push({ distinct, requests: cpuRequests, microsPerCall: per.ours, echoMicrosPerCall: per.echo });
    }

    // RSS over a long run, many distinct parents.
    const rssRequests = quick ? 20_000 : 1_000_000;
    const warm = await servers.ours.usage(true);
    const samples: { t: number; rss: number }[] = [];
    let echoPeak = 0;
    const t0 = performance.now();
    const sampler = setInterval(() => {
      const rss = procMemory(servers.ours.pid);
      if (rss !== undefined) samples.push({ t: (performance.now() - t0) / 1000, rss });
      echoPeak = Math.max(echoPeak, procMemory(servers.echo.pid) ?? 0);
    }, quick ? 250 : 1000);
    const longRun = await load({ url: servers.ours.url, rate: 0, connections: 8, amount: rssRequests, distinct: 10_000 });
    clearInterval(sampler);
    const end = await servers.ours.usage(true);
    const tenth = Math.max(1, Math.floor(samples.length / 10));
    const avg = (xs: { rss: number }[]): number => xs.reduce((a, b) => a + b.rss, 0) / Math.max(1, xs.length);
    // echo's memory under the same kind of run, for reference (a short one)
    await load({ url: servers.echo.url, rate: 0, connections: 8, amount: quick ? 10_000 : 100_000, distinct: 10_000 });
    echoPeak = Math.max(echoPeak, procMemory(servers.echo.pid, "VmHWM") ?? 0);
    const rss = {
      requests: longRun.requests,
      seconds: longRun.seconds,
      samples,
      // skip the first tenth (warm-up of the JIT and the heap) for the start figure
      startRss: avg(samples.slice(tenth, 2 * tenth)),
      endRss: avg(samples.slice(-tenth)),
      peakRss: procMemory(servers.ours.pid, "VmHWM") ?? Math.max(...samples.map((s) => s.rss)),
      heapAfterWarmup: warm.heapUsed,
      heapAtEnd: end.heapUsed,
      echoPeakRss: echoPeak,
      load: longRun,
    };
    log(`hook: RSS over ${longRun.requests} requests: ${(rss.startRss / 2 ** 20).toFixed(1)} → ${(rss.endRss / 2 ** 20).toFixed(1)} MiB; heap after GC ${(warm.heapUsed / 2 ** 20).toFixed(1)} → ${(end.heapUsed / 2 ** 20).toFixed(1)} MiB`);
    // Where the time goes: a CPU profile of the server under the same load (full mode only).
    let profile: ProfileSummary | undefined;
    if (!quick) {
      const dir = mkdtempSync(join(tmpdir(), "hook-prof-"));
      try {
        const prof = await startServerChild("ours", ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
        await load({ url: prof.url, rate: 0, connections: 4, amount: 30_000, distinct: 10_000 });
        await prof.stop();
        const files = readdirSync(dir)
          .filter((f) => f.endsWith(".cpuprofile"))
          .map((f) => join(dir, f))
          .sort((a, b) => statSync(b).size - statSync(a).size);
        if (files[0] !== undefined) profile = summarise(files[0], 12);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return {
      profile,
      payloadBytes: tpl.bytes,
      pinned: hasTaskset,
      rates: rows,
      max,
      highestRateP99Under5: { ours: highest("ours"), echo: highest("echo"), topTried: rates[rates.length - 1] ?? 0 },
      cpu,
      rss,
      logLines: servers.ours.logLines(),
      scheduling: { fifoSteps: fifo, niced },
      loadavg: { before: loadBefore, after: loadavg() },
    };
  } finally {
    await Promise.all([...Object.values(servers).map((s) => s.stop()), loader.stop()]);
  }
}
