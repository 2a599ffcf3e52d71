// `npm run bench` — measures the hook server and the committer against baselines taken in the same
// run, prints the figures, and writes docs/benchmarks.md (raw figures in bench/results/*.json).
//
//   npm run bench                      full run (long: one million hook requests, 1 GiB layers)
//   npm run bench -- --quick           everyday run, under two minutes
//   npm run bench -- --only=hook       one part; the other part's section comes from its last results
//   npm run bench -- --only=committer
//
// Benchmarks print figures and ratios; they assert nothing (no timed assertions in tests).
import { mkdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { benchHookServer, type HookResults } from "./hook.js";
import { describeMachine, renderReport, type Machine, type RunMeta } from "./report.js";
import { log, REPO_ROOT } from "./util.js";

interface Args {
  quick: boolean;
  only: "hook" | "committer" | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: undefined };
  for (const x of argv) {
    if (x === "--quick") a.quick = true;
    else if (x === "--only=hook" || x === "--only=committer") a.only = x.slice("--only=".length) as Args["only"];
    else {
      process.stderr.write(`bench: unknown argument ${JSON.stringify(x)}; use --quick and/or --only=hook|committer\n`);
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

function load<T>(name: string): Stored<T> | undefined {
  const p = join(RESULTS, `${name}.json`);
  if (!existsSync(p)) return undefined;
  return JSON.parse(readFileSync(p, "utf8")) as Stored<T>;
}

function save(name: string, v: Stored<unknown>): void {
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, `${name}.json`), `${JSON.stringify(v, null, 1)}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const machine = describeMachine();
  const command = `npm run bench${args.quick || args.only ? " --" : ""}${args.quick ? " --quick" : ""}${args.only ? ` --only=${args.only}` : ""}`;
  const meta = (): RunMeta => ({ date: new Date().toISOString(), quick: args.quick, command, seconds: (performance.now() - started) / 1000 });

  let hook = load<HookResults>("hook");
  if (args.only !== "committer") {
    const r = await benchHookServer({ quick: args.quick });
    hook = { meta: meta(), machine, results: r };
    save("hook", hook);
  }
  let committer = load<unknown>("committer");
  if (args.only !== "hook") {
    const { benchCommitter } = await import("./committer.js");
    const r = await benchCommitter({ quick: args.quick });
    committer = { meta: meta(), machine, results: r };
    save("committer", committer);
  }
  const doc = renderReport({ hook, committer: committer as Parameters<typeof renderReport>[0]["committer"] });
  writeFileSync(join(REPO_ROOT, "docs", "benchmarks.md"), doc);
  log(`wrote docs/benchmarks.md in ${((performance.now() - started) / 1000).toFixed(1)} s total`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
