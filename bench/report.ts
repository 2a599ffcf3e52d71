// docs/benchmarks.md from the stored results: tables with our figure, the baseline, the floor and the
// ratio; the machine; the command that reproduces it. Targets missed are said so, with the figure.
import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import { readFileSync } from "node:fs";
import type { CommitterResults } from "./committer-types.js";
import type { HookResults } from "./hook.js";
import { fmtInt, fmtMiB, fmtMs, fmtRatio, MiB, table } from "./util.js";

export interface RunMeta {
  readonly date: string;
  readonly quick: boolean;
  readonly command: string;
  readonly seconds: number;
}

export interface Machine {
  readonly cpu: string;
  readonly cores: number;
  readonly memory: string;
  readonly os: string;
  readonly kernel: string;
  readonly node: string;
  readonly containerd: string;
  readonly runc: string;
  readonly registry: string;
  readonly disk: string;
}

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "not found";
  }
}

export function describeMachine(): Machine {
  let os = "unknown";
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // not Linux
  }
  const root = tryRun("findmnt", ["-no", "FSTYPE,SOURCE", "/"]);
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os,
    kernel: tryRun("uname", ["-r"]),
    node: process.version,
    containerd: tryRun("containerd", ["--version"]).split(" ").slice(2).join(" "),
    runc: tryRun("runc", ["--version"]).split("\n")[0] ?? "",
    registry: tryRun("dpkg-query", ["-W", "-f=${Version}", "docker-registry"]),
    disk: `root file system ${root} (containerd's root and the scratch directory live on it)`,
  };
}

function machineSection(m: Machine): string {
  return table(
    ["", ""],
    [
      ["CPU", `${m.cpu}, ${m.cores} cores (a virtual machine)`],
      ["memory", m.memory],
      ["OS, kernel", `${m.os}, Linux ${m.kernel}`],
      ["Node", m.node],
      ["containerd, runc", `${m.containerd}; ${m.runc}`],
      ["registry", `docker-registry (distribution) ${m.registry}, filesystem storage, loopback`],
      ["disk", m.disk],
    ],
  );
}

const verdict = (ok: boolean): string => (ok ? "**met**" : "**missed**");

function hookSection(h: { meta: RunMeta; machine: Machine; results: HookResults }): string {
  const r = h.results;
  const out: string[] = [];
  out.push("## Hook server");
  out.push("");
  out.push(
    `Measured ${h.meta.date.slice(0, 16).replace("T", " ")} UTC with \`${h.meta.command}\`${h.meta.quick ? " (quick mode: short steps, fewer requests)" : ""}.`,
  );
  out.push("");
  out.push(
    [
      `What is sent: \`POST /sync\` with the request Metacontroller sends for our rules — a snapshot with a`,
      `3-container status whose commit failed while its unpause Job runs: the parent, the BatchSandbox, 2 Pods`,
      `(source pod with 3 containers, unpause Job pod) with their managedFields, 2 Jobs (commit, unpause) as the`,
      `API server returns them; ${fmtInt(r.payloadBytes)} bytes of JSON (bench/hook-payloads.ts builds it with`,
      `test/support/fixtures.ts and the reconcile core, so the parent's status is the hook's fixpoint and every`,
      `answer is a full, schema-checked 200). Requests cycle through 100 different parents (10,000 where noted).`,
      "",
      `How: the server runs \`startServer()\` (src/server/app.ts, LOG_LEVEL=info, no Kubernetes API) in its own`,
      `process ${r.pinned ? "pinned to core 0 (`taskset -c 0`)" : "(taskset was missing: not pinned)"}; autocannon runs in a second process${r.pinned ? " pinned to core 1" : ""}, on loopback, at a`,
      `fixed overall rate. Latency is autocannon's per-response time (sub-millisecond, client side, so it includes`,
      `the client's own overhead — the baseline has the same). **Baseline**: a trivial express 5 JSON echo`,
      `(\`express.json()\` with the same 4 MB limit, \`res.json(req.body)\`) in the same kind of process on the same`,
      `core, same payload, same run. Note the echo sends the whole ${Math.round(r.payloadBytes / 1024)} KB body back, while the hook answers`,
      `with its status and the unpause Job (about 3.6 KB).`,
    ].join("\n"),
  );
  out.push("");
  out.push(
    [
      `**Shared machine.** Other engineers' test suites (containerd, kube-apiserver, vitest) share these 2 cores`,
      `(1-minute load average ${r.loadavg.before.toFixed(1)} before, ${r.loadavg.after.toFixed(1)} after). To measure our code rather than the neighbours,`,
      r.scheduling.fifoSteps
        ? "the server and the load generator ran the fixed-rate steps under `SCHED_FIFO` (`--realtime`: `chrt -a -f 20`, they get their core when a request arrives, like a dedicated core) and everything else with `nice -n -10`; closed-loop runs are not real-time (they would starve the core)."
        : `the server and the load generator ran ${r.scheduling.niced ? "with `nice -n -10`" : "at normal priority"}, not real-time (\`--realtime\` runs the fixed-rate steps under \`SCHED_FIFO\`, for a machine of your own: on this busy one it once livelocked a step).`,
      "Tail latencies (p99) still carry this noise — the echo baseline, measured the same way, shows how much.",
    ].join(" "),
  );
  out.push("");
  out.push("### Latency and throughput at fixed rates (one core)");
  out.push("");
  out.push(
    table(
      ["rate (req/s)", "ours p50", "ours p99", "ours achieved", "echo p50", "echo p99", "echo achieved", "p99 ours / echo"],
      r.rates.map((x) => [
        fmtInt(x.rate),
        fmtMs(x.ours.p50),
        fmtMs(x.ours.p99),
        `${fmtInt(x.ours.throughput)}/s${x.ours.non2xx + x.ours.errors > 0 ? ` (${x.ours.non2xx + x.ours.errors} failed)` : ""}`,
        fmtMs(x.echo.p50),
        fmtMs(x.echo.p99),
        `${fmtInt(x.echo.throughput)}/s`,
        fmtRatio(x.ours.p99 / x.echo.p99),
      ]),
    ),
  );
  out.push("");
  out.push(
    "The median grows with the rate for both servers: autocannon fires each connection on its own timer, so requests arrive in small bursts and queue behind each other on the one core.",
  );
  out.push("");
  out.push(
    `Closed loop (8 connections, as fast as it answers): ours ${fmtInt(r.max.ours.throughput)} req/s (p99 ${fmtMs(r.max.ours.p99)}), echo ${fmtInt(r.max.echo.throughput)} req/s (p99 ${fmtMs(r.max.echo.p99)}) — ratio ${fmtRatio(r.max.ours.throughput / r.max.echo.throughput)}.`,
  );
  out.push("");
  const at = (rate: number): RateRowLike | undefined => r.rates.find((x) => x.rate === rate);
  const t1000 = at(1000);
  const t2000 = at(2000);
  const p99ok = (x: RateRowLike | undefined): boolean => x !== undefined && x.ours.p99 <= 2 && x.ours.non2xx + x.ours.errors === 0;
  const hi = r.highestRateP99Under5;
  out.push("Targets:");
  out.push("");
  out.push(`- p99 ≤ 2 ms at 1,000 req/s: ${verdict(p99ok(t1000))} (${fmtMs(t1000?.ours.p99 ?? Number.NaN)}).`);
  out.push(`- p99 ≤ 2 ms at 2,000 req/s (the stretch in the brief): ${verdict(p99ok(t2000))} (${fmtMs(t2000?.ours.p99 ?? Number.NaN)}).`);
  out.push(
    `- Highest fixed rate tried that still holds p99 ≤ 5 ms (and ≥ 95 % of the rate achieved, no errors): ours ${hi.ours !== undefined ? `**${fmtInt(hi.ours)} req/s**` : "none"}${hi.ours === hi.topTried ? " (the highest rate tried)" : ""}, echo ${hi.echo !== undefined ? `${fmtInt(hi.echo)} req/s` : "none of the rates tried"}.`,
  );
  out.push("");
  out.push("### CPU per sync call against the number of parents");
  out.push("");
  out.push(
    "`process.cpuUsage()` of the server process (user + system) over a fixed number of requests, divided by the requests; requests cycle through 100 or 10,000 different parents (every request is a different parent's full payload).",
  );
  out.push("");
  out.push(
    table(
      ["distinct parents", "requests", "ours CPU per call", "echo CPU per call", "ours / echo"],
      r.cpu.map((c) => [fmtInt(c.distinct), fmtInt(c.requests), `${c.microsPerCall.toFixed(0)} µs`, `${c.echoMicrosPerCall.toFixed(0)} µs`, fmtRatio(c.microsPerCall / c.echoMicrosPerCall)]),
    ),
  );
  const c100 = r.cpu.find((c) => c.distinct === 100);
  const c10k = r.cpu.find((c) => c.distinct === 10_000);
  if (c100 && c10k) {
    const growth = c10k.microsPerCall / c100.microsPerCall;
    out.push("");
    out.push(
      `Cost with 10,000 parents / cost with 100: ${fmtRatio(growth)} — ${growth <= 1.15 ? "flat: the hook keeps nothing per parent, the cost does not grow with the number of snapshots" : "**it grows** with the number of parents"}.`,
    );
  }
  out.push("");
  out.push("### Memory over a long run");
  out.push("");
  const s = r.rss;
  const growth = s.endRss - s.startRss;
  const flat = growth < 16 * MiB && s.heapAtEnd - s.heapAfterWarmup < 8 * MiB;
  out.push(
    `${fmtInt(s.requests)} requests (10,000 different parents, closed loop, ${s.seconds.toFixed(0)} s, ${fmtInt(s.load.throughput)} req/s, p99 ${fmtMs(s.load.p99)}, ${s.load.non2xx + s.load.errors} failed). RSS of the server process sampled from /proc:`,
  );
  out.push("");
  out.push(
    table(
      ["", "ours", "echo (reference)"],
      [
        ["RSS early in the run (2nd tenth)", fmtMiB(s.startRss), ""],
        ["RSS at the end (last tenth)", fmtMiB(s.endRss), ""],
        ["peak RSS (VmHWM)", fmtMiB(s.peakRss), fmtMiB(s.echoPeakRss)],
        ["heap used after a full GC: before the run → after", `${fmtMiB(s.heapAfterWarmup)} → ${fmtMiB(s.heapAtEnd)}`, ""],
      ],
    ),
  );
  out.push("");
  out.push(`Flat-memory check (RSS growth < 16 MiB and heap growth < 8 MiB across the run): ${flat ? "**flat**" : "**not flat**"} (RSS ${growth >= 0 ? "+" : ""}${fmtMiB(growth)}, heap ${s.heapAtEnd - s.heapAfterWarmup >= 0 ? "+" : ""}${fmtMiB(s.heapAtEnd - s.heapAfterWarmup)}).`);
  out.push("");
  out.push(`Log lines the server wrote during the whole benchmark: ${fmtInt(r.logLines)} (steady-state syncs log nothing at \`info\`).`);
  if (r.profile) {
    out.push("");
    out.push("### Where the time goes (CPU profile)");
    out.push("");
    out.push(
      `\`node --cpu-prof\` of the server over 30,000 sync calls (closed loop, 10,000 parents), self time by place (bench/profile-summary.ts), ${r.profile.totalMs.toFixed(0)} ms busy in total:`,
    );
    out.push("");
    out.push(table(["place", "share of busy time"], r.profile.byPlace.map((p) => [p.place, `${p.pct.toFixed(1)} %`])));
    out.push("");
    out.push("Hottest functions:");
    out.push("");
    out.push(table(["function (place:line)", "share"], r.profile.byFunction.slice(0, 8).map((p) => [`\`${p.name}\``, `${p.pct.toFixed(1)} %`])));
  }
  return out.join("\n");
}

type RateRowLike = HookResults["rates"][number];

export interface ReportInput {
  readonly hook: { meta: RunMeta; machine: Machine; results: HookResults } | undefined;
  readonly committer: { meta: RunMeta; machine: Machine; results: CommitterResults; earlier?: readonly EarlierRun[] } | undefined;
}

export function renderReport(input: ReportInput): string {
  const out: string[] = [];
  out.push("# Benchmarks");
  out.push("");
  out.push("<!-- Generated by `npm run bench` (bench/run.ts); edit bench/report.ts, not this file. -->");
  out.push("");
  out.push(
    "Every figure below is compared with a baseline measured **in the same run on the same machine**, and with a floor where one exists. The benchmarks print figures; they assert nothing. A target that is missed is marked **missed**, with the figure.",
  );
  out.push("");
  out.push("Reproduce:");
  out.push("");
  out.push("```sh");
  out.push("npm ci");
  out.push("sudo bash test/env/install-components.sh   # containerd, runc, docker-registry, … from Debian");
  out.push("npm run bench                # full run (as root: containerd, cgroups, drop_caches)");
  out.push("npm run bench -- --quick     # everyday run, under two minutes (prints the report; docs/ keeps the full run)");
  out.push("npm run bench -- --only=hook # or --only=committer: one part, the other part's section is kept");
  out.push("npm run bench -- --report    # re-render this file from bench/results/*.json");
  out.push("BENCH_WORKLOADS=e1,g1 npm run bench -- --only=committer  # some committer workloads: ids (a)–(h), ×1 or ×3 containers");
  out.push("```");
  out.push("");
  out.push("Raw figures of the last run: `bench/results/hook.json`, `bench/results/committer.json`.");
  out.push("");
  out.push("## Machine");
  out.push("");
  const m = input.hook?.machine ?? input.committer?.machine;
  // the two parts may come from runs with different Node versions (`--only=`): say which ran on which
  const hookNode = input.hook?.machine.node;
  const committerNode = input.committer?.machine.node;
  const node = hookNode !== undefined && committerNode !== undefined && hookNode !== committerNode ? `${hookNode} (hook server run), ${committerNode} (committer run)` : undefined;
  if (m) out.push(machineSection(node !== undefined ? { ...m, node } : m));
  out.push("");
  if (input.hook) out.push(hookSection(input.hook));
  else out.push("## Hook server\n\nNot measured yet (`npm run bench -- --only=hook`).");
  out.push("");
  if (input.committer) out.push(committerSection(input.committer));
  else out.push("## Committer\n\nNot measured yet (`npm run bench -- --only=committer`).");
  out.push("");
  out.push(FINDINGS);
  return out.join("\n");
}

/** A stored earlier committer run, shown next to the current one; `judged`: the 10 % target is checked against it. */
export interface EarlierRun {
  readonly meta: RunMeta;
  readonly results: CommitterResults;
  readonly label: string;
  readonly judged: boolean;
}

function committerSection(c: { meta: RunMeta; machine: Machine; results: CommitterResults; earlier?: readonly EarlierRun[] }): string {
  const r = c.results;
  const out: string[] = [];
  out.push("## Committer");
  out.push("");
  out.push(
    `Measured ${c.meta.date.slice(0, 16).replace("T", " ")} UTC with \`${c.meta.command}\`${r.quick ? ` (quick mode: sizes × ${r.scale}, one container per workload plus (b) with three)` : ""}.`,
  );
  out.push("");
  out.push(
    [
      "Set-up (bench/committer.ts): the integration test bed — containerd with its own root and socket, runc, the",
      "busybox base image built locally, the real registry — all on loopback. Each sandbox container (busybox",
      "`sleep`) gets a **heartbeat** (bench/heartbeat.ts): a Node process on the host, moved into the container's",
      "freezer cgroup right after the container starts, so pausing the container freezes it too. It wakes every",
      "millisecond and appends every stall longer than 2 ms to a file in a tmpfs directory (outside the captured",
      "filesystem). *Freeze felt* is the longest stall any container of the pod saw while a commit ran — what the",
      "sandbox feels, pause and resume included.",
      "",
      `The committer runs as its own process — the project's sources transpiled to JavaScript (esbuild), as in its`,
      `image — ${r.memoryLimitBytes !== undefined ? `in a memory cgroup limited to ${fmtMiB(r.memoryLimitBytes, 0)} (the commit Job's default \`COMMIT_JOB_MEMORY\`)` : "without a memory limit (no cgroup v1 memory controller here)"},`,
      "with gzip, against the registry through a loopback proxy that counts uploaded bytes.",
      r.cachesDropped ? "Before every read of the changes (the floor, ours, the Diff service, the bound) the page cache is dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`), so each starts cold." : "The page cache could not be dropped (not root): every figure is warm.",
      "",
      "Per workload, in the same run:",
      "",
      "- **floor**: reading the changed bytes once — GNU tar of the upper directories with the committer's flags, into a pipe; cold (after dropping the cache) and warm (again at once);",
      "- **ours**: `image-committer <pod> <ns> <container>:<ref>…` — freeze felt, its own `freezeMillis`, end-to-end process time, peak RSS (VmHWM);",
      "- **Diff service** (the usual way — `nerdctl commit`, `docker commit`): pause every container, for each a view of the parent snapshot and containerd's `Diff` with gzip, then resume;",
      "- **bound**: read + compress + upload the same bytes — `tar | gzip (zlib level 6, as ours) → file + sha256 → pushBlob` with the project's registry client, per container. The bound compresses on one thread, the usual way; ours compresses at the same level on every core (pigz's way, src/committer/compress.ts).",
      "",
      `Node's start-up alone (the committer's usage-error path) takes ${fmtMs(r.nodeStartupMs, 0)} of every end-to-end time.`,
      `${r.reniced ? "The bench, containerd (so its shims and runc), the registry and the committer run with `nice -n -10`, equally, because other work shares the machine" : "No process was reniced"} (1-minute load average ${r.loadavg.before.toFixed(1)} before, ${r.loadavg.after.toFixed(1)} after).`,
      "Stalls the heartbeat sees in a quiet second with nothing frozen (scheduling noise) are in the *idle stall* column.",
    ].join("\n"),
  );
  out.push("");
  out.push("### Freeze: ours against the floor and the Diff service");
  out.push("");
  out.push(
    table(
      ["workload", "containers", "changed", "entries", "tar", "idle stall", "floor cold / warm", "**ours felt**", "ours reported", "ours / cold floor", "Diff service felt", "ours / Diff service"],
      r.runs.map((x) => [
        `(${x.id}) ${x.title}`,
        x.containers,
        fmtMiB(x.changedBytes),
        fmtInt(x.changedEntries),
        fmtMiB(x.tarBytes),
        fmtMs(x.idleStallMs, 0),
        `${fmtMs(x.coldReadMs, 0)} / ${fmtMs(x.warmReadMs, 0)}`,
        Number.isFinite(x.ours.feltFreezeMs) ? `**${fmtMs(x.ours.feltFreezeMs, 0)}**${x.ours.error !== undefined ? " (commit failed later)" : ""}` : "**failed**",
        fmtMs(x.ours.reportedFreezeMs, 0),
        fmtRatio(x.ours.feltFreezeMs / x.coldReadMs),
        x.diffService !== undefined ? fmtMs(x.diffService.feltFreezeMs, 0) : "not run",
        x.diffService !== undefined ? fmtRatio(x.ours.feltFreezeMs / x.diffService.feltFreezeMs) : "—",
      ]),
    ),
  );
  out.push("");
  const ids = (xs: typeof r.runs): string => xs.map((x) => `(${x.id})×${x.containers}`).join(", ") || "none";
  // issue 14's targets for an idle sandbox: freeze felt against the cold read of the changed bytes
  const freezeTarget = (id: string): number | undefined => (id === "b" || id === "c" ? 0.25 : id === "a" || id === "d" ? 1.5 : id === "e" ? 1.0 : undefined);
  const targeted = r.runs.filter((x) => freezeTarget(x.id) !== undefined);
  const freezeOk = targeted.filter((x) => x.ours.feltFreezeMs <= (freezeTarget(x.id) ?? 0) * x.coldReadMs);
  const withDiff = r.runs.filter((x) => x.diffService !== undefined);
  const fifthOk = withDiff.filter((x) => x.ours.feltFreezeMs <= (x.diffService?.feltFreezeMs ?? 0) / 5);
  out.push("Targets:");
  out.push("");
  out.push(
    `- freeze felt ≤ 0.25× the cold read for (b) and (c), ≤ 1.5× for (a) and (d), ≤ 1.0× a cold GNU tar of the upper directory for (e): ${verdict(freezeOk.length === targeted.length)} — held for ${ids(freezeOk)}; missed for ${ids(targeted.filter((x) => !freezeOk.includes(x)))}.`,
  );
  out.push(
    `- our freeze ≤ 1/5 of the Diff service's: ${verdict(fifthOk.length === withDiff.length)} — held for ${ids(fifthOk)}; missed for ${ids(withDiff.filter((x) => !fifthOk.includes(x)))}${withDiff.length < r.runs.length ? `; the Diff service was not run for ${ids(r.runs.filter((x) => x.diffService === undefined))}` : ""}.`,
  );
  for (const x of r.runs.filter((y) => y.id === "g" || y.id === "h")) {
    const ok = x.ours.error === undefined;
    const full = x.id === "g" ? "500,000" : "1,000,000";
    out.push(
      `- (${x.id}) ${fmtInt(x.changedEntries)} entries commit under the default 60 s watchdog (SNAPSHOT_MAX_FREEZE_SECONDS unset): ${verdict(ok)} — freeze felt ${fmtMs(x.ours.feltFreezeMs, 0)} (reported ${fmtMs(x.ours.reportedFreezeMs, 0)}), ${fmtRatio(x.ours.feltFreezeMs / x.coldReadMs)} the cold GNU tar of the upper directory, peak RSS ${fmtMiB(x.ours.peakRssBytes, 0)}${ok ? "" : `; the commit failed: ${x.ours.error ?? ""}`}${r.quick ? ` (a quick run: not the ${full} entries of the target)` : ""}.`,
    );
  }
  for (const x of r.runs.filter((y) => y.verified !== undefined)) {
    out.push(`- (${x.id})×${x.containers}, a sandbox writing all along: freeze felt ${fmtMs(x.ours.feltFreezeMs, 0)}; the pushed image pulled back and checked — ${x.verified ?? ""}.`);
  }
  out.push(`- \`nerdctl commit\` as a second baseline: ${r.nerdctl}.`);
  out.push("");
  out.push("### End to end: ours against the bound");
  out.push("");
  out.push(
    table(
      ["workload", "containers", "tar", "ours end to end", "bound: tar → gzip → push", "ours / bound", "ours layer (gzip)", "Diff-service layer (gzip)", "ours peak RSS"],
      r.runs.map((x) => [
        `(${x.id})`,
        x.containers,
        fmtMiB(x.tarBytes),
        x.ours.error !== undefined ? `**failed** after ${fmtMs(x.ours.endToEndMs, 0)}` : fmtMs(x.ours.endToEndMs, 0),
        fmtMs(x.boundMs, 0),
        x.ours.error !== undefined ? "—" : fmtRatio(x.ours.endToEndMs / x.boundMs),
        fmtMiB(x.ours.layerBytes, 2),
        x.diffService !== undefined ? fmtMiB(x.diffService.layerBytes, 2) : "not run",
        fmtMiB(x.ours.peakRssBytes, 0),
      ]),
    ),
  );
  out.push("");
  const e2eOk = r.runs.filter((x) => x.ours.error === undefined && x.ours.endToEndMs <= 1.2 * x.boundMs);
  out.push(
    `Target end to end ≤ 1.2× the bound: ${verdict(e2eOk.length === r.runs.length)} — held for ${ids(e2eOk)}; missed for ${ids(r.runs.filter((x) => !e2eOk.includes(x)))}. The bound has no process start-up, no containerd look-ups, no base-image push and no manifest; ours has all of them.`,
  );
  out.push("");
  for (const e of c.earlier ?? []) {
    out.push(
      `### Earlier run, for comparison (${e.meta.date.slice(0, 16).replace("T", " ")} UTC, \`${e.meta.command}\`${e.results.quick ? `, quick ×${e.results.scale}` : ""}; ${e.label})`,
    );
    out.push("");
    out.push(
      table(
        ["workload", "containers", "changed", "floor cold", "freeze felt then", "freeze felt now", "end to end then", "end to end now", "now / then (end to end)", "ours / bound then", "ours / bound now"],
        e.results.runs.map((x) => {
          const now = r.runs.find((y) => y.id === x.id && y.containers === x.containers);
          const comparable = now?.changedBytes === x.changedBytes;
          return [
            `(${x.id})`,
            x.containers,
            fmtMiB(x.changedBytes),
            fmtMs(x.coldReadMs, 0),
            fmtMs(x.ours.feltFreezeMs, 0),
            now !== undefined ? `${fmtMs(now.ours.feltFreezeMs, 0)}${comparable ? "" : ` (at ${fmtMiB(now.changedBytes)})`}` : "not run",
            fmtMs(x.ours.endToEndMs, 0),
            now !== undefined ? fmtMs(now.ours.endToEndMs, 0) : "not run",
            comparable ? fmtRatio(now.ours.endToEndMs / x.ours.endToEndMs) : "— (other size)",
            fmtRatio(x.ours.endToEndMs / x.boundMs),
            comparable ? fmtRatio(now.ours.endToEndMs / now.boundMs) : "—",
          ];
        }),
      ),
    );
    out.push("");
    if (!e.judged) continue;
    // the machine's speed differs between runs: the bound (same code both times) measures it
    const rows = e.results.runs.flatMap((x) => {
      const now = r.runs.find((y) => y.id === x.id && y.containers === x.containers && y.changedBytes === x.changedBytes);
      return now !== undefined && now.ours.error === undefined ? [{ x, now }] : [];
    });
    const worse = rows.filter(({ x, now }) => now.ours.endToEndMs / now.boundMs > 1.1 * (x.ours.endToEndMs / x.boundMs));
    out.push(
      `Target: end to end no more than 10 % worse than then (the pre-copy reads the tree a second time). Times from two runs on a shared machine differ with its load, so this is judged on end to end against the bound of the same run: ${rows.length === 0 ? "not judged (no comparable rows)" : `${verdict(worse.length === 0)} — held for ${rows.filter((y) => !worse.includes(y)).map(({ x }) => `(${x.id})×${x.containers}`).join(", ") || "none"}; missed for ${worse.map(({ x }) => `(${x.id})×${x.containers}`).join(", ") || "none"}`}. Rows run at another size (a quick run) are not comparable and say so.`,
    );
    out.push("");
  }
  const failed = r.runs.filter((x) => x.ours.error !== undefined);
  for (const x of failed) out.push(`**(${x.id})×${x.containers} failed**: ${x.ours.error ?? ""}`, "");
  const first = r.runs[0];
  if (first !== undefined) {
    const rss = r.runs.map((x) => x.ours.peakRssBytes);
    const biggest = r.runs.reduce((a, b) => (b.tarBytes / b.containers > a.tarBytes / a.containers ? b : a), first);
    const smallest = r.runs.reduce((a, b) => (b.tarBytes < a.tarBytes ? b : a), first);
    const grows = biggest.ours.peakRssBytes > smallest.ours.peakRssBytes + 64 * MiB;
    out.push(
      `Peak memory (target: it must stream — not grow with the layer): ${grows ? "**missed**" : "**met**"} — ${fmtMiB(Math.min(...rss), 0)} – ${fmtMiB(Math.max(...rss), 0)} across workloads; ${fmtMiB(smallest.ours.peakRssBytes, 0)} for the smallest layer (${fmtMiB(smallest.tarBytes)}) against ${fmtMiB(biggest.ours.peakRssBytes, 0)} for the largest per container (${fmtMiB(biggest.tarBytes / biggest.containers)} per container)${failed.length > 0 ? `; ${failed.length} run(s) killed under the ${fmtMiB(r.memoryLimitBytes ?? Number.NaN, 0)} limit` : ""}.`,
    );
    out.push("");
  }
  if (r.second) {
    const s = r.second;
    out.push("### The next snapshot of a resumed sandbox");
    out.push("");
    out.push(
      "A sandbox is snapshotted, its image pulled back into containerd and run (as a resume does), changed again, and snapshotted into the same repository. Uploaded bytes are the request bodies the registry received during the second commit (counting proxy).",
    );
    out.push("");
    out.push(
      table(
        ["new changes (files)", "new layer (gzip)", "uploaded", "requests", "overhead", "overhead / new layer"],
        [[fmtMiB(s.changedBytes, 2), `${fmtInt(s.newLayerBytes)} B`, `${fmtInt(s.uploadedBytes)} B`, fmtInt(s.requests), `${fmtInt(s.overheadBytes)} B`, `${s.overheadPct.toFixed(3)} %`]],
      ),
    );
    out.push("");
    out.push(`Target ≤ 1 % overhead: ${verdict(s.overheadPct <= 1)} — the base layers (busybox and the first snapshot's layer) already in the repository are skipped after a HEAD; only the new layer, the config and the manifest travel.`);
  }
  return out.join("\n");
}

/** Analysis of the full run of 2026-11-29 (profiles and follow-up measurements); dated, not regenerated. */
const FINDINGS = `## Findings and hot spots

Written by hand from the runs above (hook server: 2026-11-29; committer: 2026-12-02 06:14, with notes on
the earlier runs kept above), CPU profiles and
small follow-up measurements on the same machine; re-check them after changes to the code they name.

### Hook server

- **Our overhead over the echo baseline is nil.** CPU per sync call is 200–223 µs against the echo's
  217–232 µs (the echo serialises the whole 24 KB body back). In the profile, \`JSON.parse\` of the 24 KB
  request (inside body-parser) is ~31 % of the busy time, garbage collection ~10 %, socket writes and
  other Node internals ~25 %, express and its router ~10 %; our own code (src/server, src/reconcile,
  src/api with ajv) is ~4 %. No small change in src/server or src/api can move these figures, so none
  was made.
- **p99 ≤ 2 ms at 1,000 req/s is missed (3.7 ms); the echo misses it by more (5.4 ms).** The median is
  0.5 ms. The tail is common to both servers: garbage-collection pauses in the server and in the Node load
  generator, and a 2-core virtual machine that other test suites share. An earlier run with
  \`--realtime\` (SCHED_FIFO) on a busier machine gave nearly the same figures (3.8 ms against the echo's
  4.1 ms). At ~210 µs of CPU per call, one core serves about 4,500 sync calls per second (5,030/s were
  measured in the closed loop). Judging the 2 ms target needs a machine with no neighbours, and a load
  generator that is not Node (wrk).
- The cost per call barely changes with the number of parents (10,000 vs 100: see the table). The heap
  after a full GC is flat over one million calls, and so is RSS. Peak RSS is ~350 MiB for ours and the
  echo alike, from V8's young generation and the large request strings; check it against the hook
  Deployment's memory limit.

### Committer (2026-12-02 06:14, issue 14: our own gRPC client for containerd)

Measured with \`BENCH_WORKLOADS=a1,b1,c1,d1,e1,f1,g1,h1,a3,b3,c3,d3 npm run bench -- --only=committer\`,
05:50–06:14 UTC, Node 24, on a quiet machine (1-minute load average 1.5 at the start, ~4 from the bench
itself). The machine was much faster than at 22:00 yesterday: the cold GNU tar of (e) took 17.7 s against
31.8 s, and Node's bare start-up 112 against 255 ms, so compare ratios, and read the A/B figures below
for what the code change did.

- **What changed: the committer no longer loads grpc-js and protobufjs.** A CPU profile of (d)×3 showed
  ~0.6 s of a ~2.4 s commit before the pre-copy started, mostly module loading: grpc-js (~85 ms of CPU),
  @grpc/proto-loader with protobufjs (~55 ms) and parsing the .proto files at every start (~40 ms), plus
  the garbage their code generation left. The containerd client now speaks gRPC itself over node:http2
  on the unix socket (src/containerd/grpc.ts) with a proto3 codec of its own (src/containerd/protobuf.ts)
  driven by a schema compiled from the same .proto files at \`npm run generate\` time. Loading the client
  now costs ~40 ms of CPU.
- **A/B on this machine, minutes apart** (quick runs, the commit before against this one, alternating):
  (d)×3 end to end 1508, 1392, 1359 ms before against 980, 1259, 1128 ms after (−21 % on average);
  (a)×1 726, 728 ms against 666, 605 ms (−12 %); the quick (e)'s freeze 183 against 140 ms.
- **End to end against 2026-11-29 (the issue's 10 % target): met for every row**, (d)×3 included:
  4.34× the bound against 5.01× then (the limit is 5.51×). Honestly: the code before this change also
  measured 4.3–4.9× on today's quieter machine (the A/B runs above), against 5.84× in yesterday's loaded
  run; at a bound of ~0.3 s this ratio follows the machine's load as much as the code.
- **The guide's end to end ≤ 1.2× the bound is still met only for large layers** ((b), (c): 0.60–0.84×).
  Small layers are at 2.7–4.6× (they were 5–8×), trees of many entries at 1.8–2.3×. What is left for
  small layers is Node's start-up (112 ms here), the pre-copy pass (tar spawned, a walk), the
  containerd and registry round trips and the base image's first push; for many entries the second read
  (the pre-copy's cold read, then the frozen walk, then the assembly) where the bound streams once.
- Freezes, as ratios, held: (e) 2.7 s felt, 0.15× the cold tar (0.17× at 22:00); (g) 6.1 s, 0.12×;
  (h) 1,000,002 entries 12.7 s, 0.14×, under the default 60 s watchdog; (a)×3 froze 0.21× the Diff
  service's freeze (the guide's 1/5: missed by a hair, 67 against 326 ms). Peak memory 113–177 MiB,
  flat in the layer's size. The second snapshot uploaded +0.02 %.

### Committer (2026-12-01 22:00, issue 14: GC pacing, steadier buffers, concurrent pushes)

Measured with \`BENCH_WORKLOADS=a1,b1,c1,d1,e1,f1,g1,h1,a3,b3,c3,d3 npm run bench -- --only=committer\`,
21:25–22:00 UTC, Node 24, on a busier machine than at 19:14 (1-minute load average 0.3 at the start,
~4 during the run): the bound's times are up to 1.7× those of 19:14, so read the ratios. The 19:14 run
is kept above as an earlier run. What changed since then:

- **Peak memory no longer grows with the layer: the check above is met.** The layer's Buffers (pieces,
  deflate output) die young but live outside V8's heap, and V8 collected them only after ~64 MiB of
  them, so RSS rose in a sawtooth on every large layer. The committer now asks for a young-generation
  collection after every 4 MiB of layer (src/committer/gc-pacing.ts, ~0.1 ms each). 1 GiB in (c) peaks
  at 130 MiB (167 MiB at 19:14), 256 MiB in (b) at 128 MiB (140), against 118 MiB for 1,000 small files.
  What remains of the growth is in trees of many entries ((e) 147, (g) 164, (h) 182 MiB): the walk
  holds one directory's sorted names, and (h)'s widest has 125,000.
- **Fewer buffers in flight**: a piece that arrives whole goes to deflate uncopied, the deflate dictionary
  is a 32 KiB copy (a view kept the whole previous piece alive), and the record reader refills one reused
  buffer. Live memory of a 60,000-entry capture fell from 36–38 to 30–32 MiB and varies by ~2 MiB
  between runs instead of ~8 (the capture-memory test had failed once on that variance).
- **Several containers' pushes run side by side**, each as soon as its layer is compressed (they were
  chained). (b)×3 0.96×, (c)×3 0.88× of the bound; (a)×3 5.29× (5.15× at 19:14) and (d)×3 5.84×
  (6.30× at 19:14): **still more than 10 % worse** than on 2026-11-29 (5.01×; the limit is 5.51×).
  A quick run on the quiet machine right after the change measured 5.80× for (d)×3 and 4.34× for (a)×3.
  What is left is fixed cost: ~0.5 s before the pre-copy starts (Node's start-up and module loading,
  containerd and registry look-ups), the pre-copy pass (0.35–0.47 s for 2,548 entries: tar, walk, join)
  and the first layer's assembly with cold (unoptimised) per-entry code.
- Freeze targets held as at 19:14: (e) 5.4 s felt (0.17× the cold tar), (g) 13.6 s, (h) 1,000,002
  entries 26.4 s under the default 60 s watchdog. The second snapshot uploaded +0.02 %.

### Committer (2026-12-01 19:14, issue 14: one step per entry, plain-path frozen walk, parallel gzip)

Measured with \`BENCH_WORKLOADS=a1,b1,c1,d1,e1,f1,g1,h1,a3,b3,c3,d3 npm run bench -- --only=committer\`
on an idle machine (1-minute load average 0.1 at the start, 3.5 at the end from the bench itself), Node 24. Read the ratios (same
run), not the times. What changed since the 15:14 run (its rows are kept above):

- **The layer assembly after the thaw is one synchronous step per entry** (src/committer/upper.ts
  \`layer()\`, tar.ts \`readEntryAt\`, layer.ts \`OciConverter\`/\`LayerEncoder\`): no async generator and
  no promise per entry; the tar codec encodes a header into one buffer and parses numbers and PAX records
  without strings; the archive is read through two reused 1 MiB read-ahead buffers. On a 50,002-entry
  tree (warm, idle) the assembly went from ~100 to ~25 µs per entry; the pre-copy's join of walk and
  archive uses the same reader (3.5–3.9 → 2.0 s). The layer's bytes did not change (same diff_id).
- **The frozen walk lstats by plain path** (half the cost of a path through \`/proc/self/fd\`), which is
  safe because nothing in the pod runs during the freeze: the pod's other running containers (sidecars
  not captured, ephemeral containers) are now paused with the captured ones. (e) froze for 5.9 s felt,
  0.31× a cold GNU tar of its upper directory (15.5 s and 0.49× at 15:14); (g) 500,002 entries 12.6 s (34.8 s at 15:14), 0.23×; (h)
  1,000,002 entries 27.8 s, 0.20×, under the default 60 s watchdog.
- **gzip on every core** (pigz's way, src/committer/compress.ts): 1 MiB pieces deflated in parallel
  with the previous piece's tail as dictionary, one gzip member. Large layers now finish faster than
  the single-threaded bound: (b) 0.80× and (c) 0.75× of it (×3: 0.91× and 0.76×).
- **Several containers**: their pre-copies run side by side, the look-ups before the freeze run
  concurrently, and each layer's push overlaps the next layer's compression. (a)×3 went from 5.21× to 5.15×
  of the bound, (d)×3 from 6.50× to 6.30× — still **more than 10 % worse** than on 2026-11-29 (5.01×),
  the one miss of that target; a quick run right after the change measured 5.50×: at a 0.5 s bound the
  ratio moves ±20 % between runs.
- **What is left in the end-to-end time.** Small layers (a), (d), (f) pay fixed costs — Node's start-up
  (~300 ms), containerd and registry look-ups, a pre-copy pass (spawning tar, a walk), freeze records,
  the first push of the base image into a new repository, the manifest — against a bound of 0.2–0.3 s;
  the per-entry code also runs unoptimised for its first few thousand entries (V8 warms up), so a
  2,500-entry layer costs ~100–200 µs per entry against ~25 µs on a large tree. Trees of many entries
  (e), (g), (h) take ~2× the bound: the pre-copy's cold read of the tree (the bound reads it once too) is
  followed by the frozen walk and then by the assembly and compression, where the bound streams
  tar | gzip in one pass. Compressing during the pre-copy (speculatively, before the frozen walk confirms
  the entries) would close most of that gap; it is not done.
- **Memory** stayed within 116–189 MiB in that run, which the report's check counted as **missed** (+70 MiB from the smallest to the largest layer); it rises with the width of the widest directory (the walk
  holds one directory's sorted names: (h)'s node_modules has 125,000 package directories) and with
  Node 24's larger baseline (the 15:14 run was on Node 20: 92–109 MiB), not with the layer's size:
  1 GiB in (c) peaks at 167 MiB.
- Our gzip layer is ~1.7× the Diff service's for trees of tiny files ((e): 7.4 against 4.4 MiB): we keep
  sub-second mtimes, which costs a PAX header per entry; the Diff service truncates them to seconds.

### Committer (2026-12-01 15:14, issue 14: pre-copy, only the delta under the freeze)

Measured with \`BENCH_WORKLOADS=a1,b1,c1,d1,e1,f1,g1 npm run bench -- --only=committer\` on a machine
shared with two other engineers' test suites (image builds, a kubelet node, cluster tests): the
1-minute load average was 2.4 at the start and 7–13 during the (e) and (g) rows, and the disk was busy
too — the bound's times are 1.4–4× those of 2026-11-29. Read the ratios (same run), not the times.

- **The freeze no longer grows with the sandbox's changes: every freeze target is met at full size.**
  1 GiB (c) froze for 95 ms felt (0.015× its 6.5 s cold read, 0.001× the Diff service's 92 s);
  256 MiB (b) 93 ms (0.06×). Before the pre-copy: 2.1 s and 0.8 s. What is left inside the freeze is
  pause and resume, a stat walk of the upper directory and a raw re-read of what changed since the
  pre-copy — for an idle sandbox nothing.
- **Many small entries: the stat walk is what remains.** (e) 200,002 entries froze for 15.5 s felt,
  0.49× a cold GNU tar of the upper directory (target ≤ 1.0×: met; the last quick run before the walk
  fixes was 1.45×); (g) 500,002 entries froze for 34.8 s and committed under the default 60 s watchdog
  (0.39× the cold tar). That is ~70 µs per entry at that load; the same walk measured ~25–30 µs of CPU per
  entry on 12,500 entries (cpuUsage). The walk opens every directory through \`/proc/self/fd\` (so a
  swapped symlink is never followed) and lstats each entry through that prefix: ~15 µs per entry against
  ~8 µs for a plain path (measured here); the rest is Node per-entry work (strings, Stats objects, the
  index merge, now a byte comparison of the encoded stat). Next steps, in order: lstat by plain path
  while frozen (nothing can swap a directory then), and splitting the walk over two threads.
- **(a) and (d) are dominated by fixed costs** (0.44× and 0.79× the cold read, targets ≤ 1.5× met): pause
  and resume, the freeze-record check before the thaw, and a walk of 1,000–2,500 entries.
- **End to end within 1.2× of the bound: met for (b) (1.07×) and (c) (0.94×), missed for the rest.**
  Small layers pay fixed costs (Node's start-up, look-ups, the base image's first push to a repository,
  the manifest). Many entries pay the layer assembly after the thaw: (e) 128 s against a 39 s bound
  (3.3×), (g) 339 s against 79 s (4.3×). The assembly re-parses each entry's tar header from the
  pre-copy archive (a generator per entry), converts it and encodes it again at ~280 µs per entry here;
  streaming the archive's headers and data in order instead of one seek per entry is the next step.
- **Against 2026-11-29 the end-to-end times cannot be compared directly**: the machine was 1.4–4×
  slower in this run (the bound, which did not change, shows it). Against the bound, (b) went from 1.20×
  to 1.07× and (c) from 1.02× to 0.94×; (a) from 5.8× to 8×. The pre-copy reads the tree once before the
  freeze, the layer is made from that copy after it (the uncompressed layer is no longer written).
- **Memory stays flat**: peak RSS 93–97 MiB for up to 1 GiB, 109 MiB for 500,002 entries (records are
  streamed through files on the scratch volume, not held in memory);
  test/integration/committer-capture-memory.test.ts guards it (10,000 against 60,000 entries).
- **(f), a sandbox writing all through the commit**: see its row — the image pulled back holds a whole
  log up to one line and one whole version of the rewritten file.
- nerdctl could not be built here (the module proxy answers 403 for it), so the Diff-service run — what
  \`nerdctl commit\` does — is the only "usual way" baseline.

### Committer (2026-11-29, before the pre-copy)

Large layers froze 0.6–1.3× their cold read (the whole change was read inside the freeze); rows (a) and
(d) missed their targets (1.9–5.4× the cold read); uploads were made to stream after that run (peak RSS
93–97 MiB whatever the layer size, test/integration/registry-streaming.test.ts). Its figures are in the
"Earlier run" table above.
`;
