// Retry policy: exponential backoff with jitter, bounded by attempts and by the caller's deadline.

export interface RetryPolicy {
  /** Total attempts including the first one. 1 disables retries. */
  readonly maxAttempts: number;
  /** Delay before the first retry, before jitter. */
  readonly initialDelayMs: number;
  /** Upper bound of any single delay (also caps a server's Retry-After). */
  readonly maxDelayMs: number;
  readonly multiplier: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 5,
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  multiplier: 2,
});

export function retryPolicy(p: Partial<RetryPolicy> | undefined): RetryPolicy {
  const r = { ...DEFAULT_RETRY_POLICY, ...p };
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) throw new RangeError("retry.maxAttempts must be an integer >= 1");
  if (!(r.initialDelayMs >= 0) || !(r.maxDelayMs >= r.initialDelayMs) || !(r.multiplier >= 1)) {
    throw new RangeError("retry delays must satisfy 0 <= initialDelayMs <= maxDelayMs and multiplier >= 1");
  }
  return Object.freeze(r);
}

/**
 * Delay before retry number `retry` (1 = first retry): exponential, with "equal jitter" — half the
 * delay is fixed, half random — so clients that failed together do not come back together.
 */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.initialDelayMs * policy.multiplier ** Math.max(0, retry - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** Parses `Retry-After` (delta-seconds or an HTTP date) into milliseconds, or undefined. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Sleeps, or rejects with the signal's reason when it fires first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function abortReason(signal: AbortSignal | undefined): Error {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r : new Error("aborted");
}
