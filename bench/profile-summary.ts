// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by package or
// source folder, and inclusive time of a few named stages. Used to find the hook server's hot spots:
//   npx tsx bench/profile-summary.ts <file.cpuprofile>
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly byFunction: { name: string; ms: number; pct: number }[];
  readonly byPlace: { place: string; ms: number; pct: number }[];
}

function place(url: string): string {
  if (url === "") return "(native/V8: GC, JSON, regexp…)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm?.[1] !== undefined) return nm[1];
  const src = /\/(src\/[^/]+)\//.exec(url);
  if (src?.[1] !== undefined) return src[1];
  if (url.startsWith("node:")) return "node core";
  return url.replace(/^.*\//, "");
}

export function summarise(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (const [i, id] of p.samples.entries()) self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  let total = 0;
  const fn = new Map<string, number>();
  const pl = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const name = n.callFrame.functionName || "(anonymous)";
    if (name === "(idle)" || name === "(program)") continue;
    total += us;
    const key = `${name} ${place(n.callFrame.url)}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ""}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const k2 = name === "(garbage collector)" ? "(garbage collector)" : place(n.callFrame.url);
    pl.set(k2, (pl.get(k2) ?? 0) + us);
  }
  const rows = (m: Map<string, number>): [string, number][] => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    totalMs: total / 1000,
    byFunction: rows(fn).map(([name, us]) => ({ name, ms: us / 1000, pct: (100 * us) / total })),
    byPlace: rows(pl).map(([place, us]) => ({ place, ms: us / 1000, pct: (100 * us) / total })),
  };
}

if (process.argv[1]?.endsWith("profile-summary.ts") === true) {
  const s = summarise(process.argv[2] ?? "");
  process.stdout.write(`busy ${s.totalMs.toFixed(0)} ms\n`);
  for (const r of s.byPlace) process.stdout.write(`${r.pct.toFixed(1).padStart(5)}%  ${r.place}\n`);
  process.stdout.write("\n");
  for (const r of s.byFunction) process.stdout.write(`${r.pct.toFixed(1).padStart(5)}%  ${r.name}\n`);
}
