// Load generator of the hook-server benchmark, run as its own process (pinned to another core than
// the server): autocannon against POST /sync at a fixed overall rate (or as fast as it can with
// rate 0), cycling through `distinct` different parents' requests. Prints one JSON line with the
// latency percentiles of every answered request (sub-millisecond, from autocannon's per-response
// times), autocannon's own coordinated-omission-corrected p99 (1 ms resolution), and counts.
//
// Long-lived: takes LoadSpec messages over IPC and answers each with a LoadResult (one process for the
// whole benchmark, so no start-up cost between steps).
import autocannon from "autocannon";
import { buildPayloadTemplate } from "./hook-payloads.js";

export interface LoadSpec {
  readonly url: string;
  /** Requests per second over all connections; 0 = as fast as the server answers. */
  readonly rate: number;
  readonly connections: number;
  /** Either a duration or a number of requests. */
  readonly durationSec?: number;
  readonly amount?: number;
  /** How many different parents the requests cycle through. */
  readonly distinct: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly seconds: number;
  readonly throughput: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
  readonly acP99: number;
  readonly bodyBytes: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

const tpl = buildPayloadTemplate();

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const pre = spec.distinct <= 2000 ? Array.from({ length: spec.distinct }, (_, i) => tpl.render(i)) : undefined;
  let next = 0;
  let lat = new Float64Array(1 << 16);
  let n = 0;
  const opts: autocannon.Options = {
    url: spec.url,
    connections: spec.connections,
    pipelining: 1,
    timeout: 10,
    ...(spec.rate > 0 ? { overallRate: spec.rate } : {}),
    ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.durationSec ?? 5 }),
    requests: [
      {
        method: "POST",
        path: "/sync",
        headers: { "content-type": "application/json" },
        setupRequest: (req) => {
          const i = next++ % spec.distinct;
          return { ...req, body: pre?.[i] ?? tpl.render(i) };
        },
      },
    ],
  };
  const started = performance.now();
  const instance = autocannon(opts);
  instance.on("response", (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode < 200 || statusCode >= 300) return;
    if (n === lat.length) {
      const bigger = new Float64Array(lat.length * 2);
      bigger.set(lat);
      lat = bigger;
    }
    lat[n++] = responseTime;
  });
  const r = await instance;
  const seconds = (performance.now() - started) / 1000;
  const sorted = lat.slice(0, n).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const out: LoadResult = {
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    seconds,
    throughput: n / seconds,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    p999: percentile(sorted, 99.9),
    max: sorted[sorted.length - 1] ?? Number.NaN,
    mean: n > 0 ? sum / n : Number.NaN,
    acP99: r.latency.p99,
    bodyBytes: tpl.bytes,
  };
  return out;
}

process.on("message", (spec: LoadSpec) => {
  runLoad(spec).then(
    (r) => process.send?.({ ok: true, result: r }),
    (e: unknown) => process.send?.({ ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
});
process.on("disconnect", () => process.exit(0));
process.send?.({ ready: true });
