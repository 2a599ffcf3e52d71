// The logger the client accepts (a pino logger fits) and a wrapper that scrubs every line.
import type { Scrubber } from "./errors.js";

export interface RegistryLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

const silent: RegistryLogger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
};

function scrubValue(v: unknown, scrubber: Scrubber, depth: number): unknown {
  if (typeof v === "string") return scrubber.scrub(v);
  if (v instanceof Error) return scrubber.scrub(v.message);
  if (depth > 3 || typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map((x) => scrubValue(x, scrubber, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) out[k] = scrubValue(x, scrubber, depth + 1);
  return out;
}

/** A logger whose messages and string fields pass through the scrubber before reaching `inner`. */
export function scrubbingLogger(inner: RegistryLogger | undefined, scrubber: Scrubber): RegistryLogger {
  const target = inner ?? silent;
  const wrap =
    (level: keyof RegistryLogger) =>
    (obj: Record<string, unknown>, msg: string): void => {
      target[level](scrubValue(obj, scrubber, 0) as Record<string, unknown>, scrubber.scrub(msg));
    };
  return { debug: wrap("debug"), info: wrap("info"), warn: wrap("warn") };
}
