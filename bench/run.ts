// `npm run bench` — measures the hook server and the committer against baselines taken in the same
// run, prints the figures, and writes docs/benchmarks.md (raw figures in bench/results/*.json).
//
//   npm run bench                      full run (long: one million hook requests, 1 GiB layers)
//   npm run bench -- --quick           everyday run, under two minutes
//   npm run bench -- --only=hook       one part; the other part's section comes from its last results
//   npm run bench -- --only=committer
//   npm run bench -- --quick --docs    a quick run that also rewrites docs/benchmarks.md
//   npm run bench -- --report          only re-render the report from bench/results/*.json
//   npm run bench -- --realtime        hook fixed-rate steps under SCHED_FIFO (a machine of your own only)
//
// A quick run writes .bench-tmp/results/quick-*.json and .bench-tmp/benchmarks-quick.md (and prints the
// report), leaving docs/benchmarks.md with the full run's figures.
//
// Benchmarks print figures and ratios; they assert nothing (no timed assertions in tests).
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { benchHookServer, type HookResults } from "./hook.js";
import { describeMachine, renderReport, type Machine, type RunMeta } from "./report.js";
import { log, REPO_ROOT } from "./util.js";

interface Args {
  quick: boolean;
  docs: boolean;
  report: boolean;
  realtime: boolean;
  only: "hook" | "committer" | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, docs: false, report: false, realtime: false, only: undefined };
  for (const x of argv) {
    if (x === "--quick") a.quick = true;
    else if (x === "--docs") a.docs = true;
    else if (x === "--report") a.report = true;
    else if (x === "--realtime") a.realtime = true;
    else if (x === "--only=hook" || x === "--only=committer") a.only = x.slice("--only=".length) as Args["only"];
    else {
      process.stderr.write(`bench: unknown argument ${JSON.stringify(x)}; use --quick, --docs, --report, --realtime and/or --only=hook|committer\n`);
      process.exit(2);
    }
  }
  return a;
}

export interface Stored<T> {
  readonly meta: RunMeta;
  readonly machine: Machine;
  readonly results: T;
}

const RESULTS = join(REPO_ROOT, "bench", "results");
/** Quick runs' figures stay out of the repository (.bench-tmp/ is ignored). */
const QUICK_RESULTS = join(REPO_ROOT, ".bench-tmp", "results");

function resultsDir(name: string): string {
  return name.startsWith("quick-") ? QUICK_RESULTS : RESULTS;
}

function load<T>(name: string): Stored<T> | undefined {
  const p = join(resultsDir(name), `${name}.json`);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, "utf8")) as Stored<T>;
}

function save(name: string, v: Stored<unknown>): void {
  mkdirSync(resultsDir(name), { recursive: true });
  writeFileSync(join(resultsDir(name), `${name}.json`), `${JSON.stringify(v, null, 1)}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const machine = describeMachine();
  const extra = [args.quick ? "--quick" : "", args.realtime ? "--realtime" : "", args.only ? `--only=${args.only}` : ""].filter(Boolean);
  // a selection of committer workloads (bench/committer.ts) is part of the command that reproduces the run
  const selected = process.env.BENCH_WORKLOADS !== undefined && args.only !== "hook" ? `BENCH_WORKLOADS=${process.env.BENCH_WORKLOADS} ` : "";
  const command = `${selected}npm run bench${extra.length > 0 ? ` -- ${extra.join(" ")}` : ""}`;
  const meta = (): RunMeta => ({ date: new Date().toISOString(), quick: args.quick, command, seconds: (performance.now() - started) / 1000 });

  // A quick run keeps its figures apart (.bench-tmp/results/quick-*.json, .bench-tmp/benchmarks-quick.md)
  // so that docs/benchmarks.md keeps the full run's, unless --docs says otherwise.
  const prefix = args.quick && !args.docs ? "quick-" : "";
  let hook = load<HookResults>(`${prefix}hook`);
  if (args.only !== "committer" && !args.report) {
    const r = await benchHookServer({ quick: args.quick, realtime: args.realtime });
    hook = { meta: meta(), machine, results: r };
    save(`${prefix}hook`, hook);
  }
  let committer = load<unknown>(`${prefix}committer`);
  if (args.only !== "hook" && !args.report) {
    const { benchCommitter } = await import("./committer.js");
    const r = await benchCommitter({ quick: args.quick });
    committer = { meta: meta(), machine, results: r };
    save(`${prefix}committer`, committer);
  }
  // earlier full runs kept for comparison in the report (issue 14): before the pre-copy (its 10 % target
  // is judged against this one), and the first run with it
  const earlier = [
    { name: "committer-2026-11-29", label: "before the pre-copy", judged: true },
    { name: "committer-2026-12-01-precopy", label: "with the pre-copy, before the synchronous layer assembly, the plain-path frozen walk and the parallel gzip", judged: false },
    { name: "committer-2026-12-01-evening", label: "with the parallel gzip, before the GC pacing and the concurrent pushes", judged: false },
    { name: "committer-2026-12-01-night", label: "with the GC pacing and the concurrent pushes, before our own gRPC client", judged: false },
  ].flatMap(({ name, label, judged }) => {
    const stored = load<object>(name);
    return stored !== undefined ? [{ ...stored, label, judged }] : [];
  });
  const withEarlier = committer !== undefined ? { ...(committer as object), earlier } : committer;
  const doc = renderReport({ hook, committer: withEarlier as Parameters<typeof renderReport>[0]["committer"] });
  const target = prefix === "" ? join(REPO_ROOT, "docs", "benchmarks.md") : join(REPO_ROOT, ".bench-tmp", "benchmarks-quick.md");
  mkdirSync(join(target, ".."), { recursive: true });
  writeFileSync(target, doc);
  process.stdout.write(doc);
  log(`wrote ${target.slice(REPO_ROOT.length)} in ${((performance.now() - started) / 1000).toFixed(1)} s total`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
