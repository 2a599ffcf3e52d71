// Small helpers shared by the benchmarks: child processes, /proc readings, formatting.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { which } from "../test/support/components.js";

export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export const hasTaskset = which("taskset") !== undefined;

/** Niceness of benchmark processes on a shared machine (root only; see docs/benchmarks.md). */
export const BENCH_NICE = -10;
const canRenice = process.getuid?.() === 0 && which("nice") !== undefined;
export const niced = canRenice;

/** `[nice -n -10] [taskset -c <cpu>] node --import tsx <script> ...args` — the argv to spawn. */
export function nodeCommand(script: string, args: string[], opts: { cpu?: number; nice?: boolean; nodeFlags?: string[] } = {}): [string, string[]] {
  const argv = [process.execPath, ...(opts.nodeFlags ?? []), "--import", "tsx", fileURLToPath(new URL(script, import.meta.url)), ...args];
  if (opts.cpu !== undefined && hasTaskset) argv.unshift("taskset", "-c", String(opts.cpu));
  if (opts.nice === true && canRenice) argv.unshift("nice", "-n", String(BENCH_NICE));
  const [cmd, ...rest] = argv;
  return [cmd ?? process.execPath, rest];
}

/** Runs a child to completion; resolves with stdout, rejects with stderr on a non-zero exit. */
export function runChild(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO_ROOT, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 30 * 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.slice(0, 4).join(" ")} exited with ${code ?? signal ?? "?"}: ${err.slice(-2000)}`));
    });
  });
}

/** Resident set size of a process in bytes (VmRSS), or of its peak (VmHWM). */
export function procMemory(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m?.[1] !== undefined ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Stops a child we started, by its pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => { r(); }));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(t);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

export const MiB = 1024 * 1024;

export function fmtMs(ms: number, digits = 2): string {
  return Number.isFinite(ms) ? `${ms.toFixed(digits)} ms` : "—";
}
export function fmtMiB(bytes: number, digits = 1): string {
  return Number.isFinite(bytes) ? `${(bytes / MiB).toFixed(digits)} MiB` : "—";
}
export function fmtRatio(x: number, digits = 2): string {
  return Number.isFinite(x) ? `${x.toFixed(digits)}×` : "—";
}
export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "—";
}

/** A Markdown table. */
export function table(head: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]): string => `| ${cells.map(String).join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}
