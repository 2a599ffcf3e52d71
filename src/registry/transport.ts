// One HTTP exchange with the registry: authentication (and one re-authentication on 401), a
// timeout per attempt (reset while bytes flow), the caller's deadline and signal, retries with backoff
// on connection errors, 429 and 5xx, and mapping of error answers to RegistryError.
import { Authenticator, causeText } from "./auth.js";
import { streamRequest } from "./stream-request.js";
import { formatScope, parseChallenges, pickChallenge, type Scope } from "./challenge.js";
import { RegistryError, type RegistryErrorKind, type Scrubber } from "./errors.js";
import type { RegistryLogger } from "./log.js";
import { backoffDelay, parseRetryAfter, type RetryPolicy, sleep } from "./retry.js";

/** Per-call bounds: the caller's signal and/or an absolute deadline (ms since epoch) or a budget. */
export interface CallOptions {
  readonly signal?: AbortSignal | undefined;
  /** Absolute deadline, `Date.now()` milliseconds. */
  readonly deadline?: number | undefined;
  /** Budget in milliseconds from now; combined with `deadline` (the earlier wins). */
  readonly budgetMs?: number | undefined;
}

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

/** A request body made fresh for every attempt. `touch` must be called whenever bytes move. */
export type BodyFactory = (touch: () => void) => string | Uint8Array | AsyncIterable<Uint8Array>;

export interface RequestSpec {
  readonly operation: string;
  readonly repository?: string | undefined;
  readonly method: HttpMethod;
  /** A path below the registry origin (`/v2/...`) or an absolute URL (upload locations). */
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: BodyFactory;
  readonly scopes: readonly Scope[];
  /** Statuses handed back to the caller; anything else becomes a RegistryError. */
  readonly ok: readonly number[];
  /** Retry connection errors, 429 and 5xx (default true). Uploads retry at a higher level. */
  readonly retry?: boolean;
  /** Keep the response body open for the caller (blob downloads); the idle timeout keeps running. */
  readonly stream?: boolean;
}

export interface RegistryResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly url: string;
  /** Open body when `stream` was requested, else null (already read into `bytes`). */
  readonly body: AsyncIterable<Uint8Array> | null;
  readonly bytes: Uint8Array;
}

export interface TransportOptions {
  readonly registry: string;
  readonly insecure: boolean;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy;
  readonly auth: Authenticator;
  readonly scrubber: Scrubber;
  readonly logger: RegistryLogger;
  readonly userAgent: string;
}

const MAX_ERROR_BODY = 64 * 1024;
const MAX_BODY = 16 * 1024 * 1024; // manifests are far smaller; a larger answer is a protocol error

class AttemptTimeout extends Error {
  constructor() {
    super("attempt timed out");
  }
}
class DeadlineExceeded extends Error {
  constructor() {
    super("deadline exceeded");
  }
}

/** Watches one attempt: aborts when nothing moved for `idleMs` or when the deadline passes. */
class Watchdog {
  readonly controller = new AbortController();
  private idleTimer: NodeJS.Timeout | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  readonly signal: AbortSignal;

  constructor(
    private readonly idleMs: number,
    deadline: number | undefined,
    caller: AbortSignal | undefined,
  ) {
    this.signal = caller === undefined ? this.controller.signal : AbortSignal.any([this.controller.signal, caller]);
    if (deadline !== undefined) {
      this.deadlineTimer = setTimeout(() => {
        this.controller.abort(new DeadlineExceeded());
      }, Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now())));
    }
    this.touch();
  }

  touch = (): void => {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.controller.signal.aborted) return;
    this.idleTimer = setTimeout(() => {
      this.controller.abort(new AttemptTimeout());
    }, this.idleMs);
  };

  done(): void {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
  }
}

export function deadlineOf(call: CallOptions | undefined): number | undefined {
  const fromBudget = call?.budgetMs === undefined ? undefined : Date.now() + call.budgetMs;
  const d = call?.deadline;
  if (d === undefined) return fromBudget;
  if (fromBudget === undefined) return d;
  return Math.min(d, fromBudget);
}

interface AttemptFailure {
  readonly retryable: boolean;
  readonly error: RegistryError;
  readonly retryAfterMs?: number | undefined;
}

export class Transport {
  readonly origin: string;

  constructor(private readonly o: TransportOptions) {
    // Docker Hub's name in image references is not the host that serves its API.
    const host = o.registry === "docker.io" || o.registry === "index.docker.io" ? "registry-1.docker.io" : o.registry;
    this.origin = `${o.insecure ? "http" : "https"}://${host}`;
  }

  error(kind: RegistryErrorKind, spec: { operation: string; repository?: string | undefined }, reason: string, extra: { status?: number; code?: string; attempts?: number } = {}): RegistryError {
    return new RegistryError({
      kind,
      operation: spec.operation,
      registry: this.o.registry,
      repository: spec.repository,
      reason: this.o.scrubber.scrub(reason),
      ...extra,
    });
  }

  /** Resolves a Location header (relative or absolute) against the request URL. */
  resolve(location: string, base: string): string {
    return new URL(location, base).toString();
  }

  /**
   * Sends a request, retrying transient failures within the policy and the caller's bounds.
   * `retry: false` gives a single attempt (plus one re-authentication on 401).
   */
  async request(spec: RequestSpec, call?: CallOptions): Promise<RegistryResponse> {
    const deadline = deadlineOf(call);
    const maxAttempts = spec.retry === false ? 1 : this.o.retry.maxAttempts;
    let attempt = 0;
    for (;;) {
      attempt++;
      const r = await this.attempt(spec, call?.signal, deadline);
      if (!("retryable" in r)) return r;
      if (!r.retryable || attempt >= maxAttempts) throw withAttempts(r.error, attempt);
      let delay = backoffDelay(this.o.retry, attempt);
      if (r.retryAfterMs !== undefined) delay = Math.min(this.o.retry.maxDelayMs, Math.max(delay, r.retryAfterMs));
      if (deadline !== undefined && Date.now() + delay >= deadline) throw withAttempts(r.error, attempt);
      this.o.logger.debug(
        { registry: this.o.registry, repository: spec.repository, operation: spec.operation, attempt, delayMs: delay, error: r.error.message },
        "registry request failed, retrying",
      );
      try {
        await sleep(delay, call?.signal);
      } catch {
        throw this.error("aborted", spec, "cancelled by the caller", { attempts: attempt });
      }
    }
  }

  private async attempt(spec: RequestSpec, caller: AbortSignal | undefined, deadline: number | undefined): Promise<RegistryResponse | AttemptFailure> {
    if (caller?.aborted === true) return { retryable: false, error: this.error("aborted", spec, "cancelled by the caller") };
    if (deadline !== undefined && Date.now() >= deadline) return { retryable: false, error: this.error("timeout", spec, "deadline exceeded before the request") };
    const url = spec.url.startsWith("/") ? `${this.origin}${spec.url}` : spec.url;
    const sameOrigin = new URL(url).origin === this.origin;
    let reauthentications = 0;
    for (;;) {
      const wd = new Watchdog(this.o.timeoutMs, deadline, caller);
      let sentAuth: string | undefined;
      try {
        const headers: Record<string, string> = { "user-agent": this.o.userAgent, ...spec.headers };
        if (sameOrigin) {
          sentAuth = await this.o.auth.authorization(spec.scopes, { operation: spec.operation, repository: spec.repository, signal: wd.signal });
          if (sentAuth !== undefined) headers.authorization = sentAuth;
        }
        const body = spec.body?.(wd.touch);
        const init: RequestInit = { method: spec.method, headers, signal: wd.signal, redirect: "manual" };
        if (typeof body === "string" || body instanceof Uint8Array) init.body = body;
        let res =
          body === undefined || typeof body === "string" || body instanceof Uint8Array
            ? await fetch(url, init)
            : await streamRequest(url, { method: spec.method, headers, signal: wd.signal }, body);
        wd.touch();
        // Follow redirects of reads (blob downloads may point at storage) without credentials.
        let hops = 0;
        while ((spec.method === "GET" || spec.method === "HEAD") && [301, 302, 303, 307, 308].includes(res.status) && hops < 5) {
          const loc = res.headers.get("location");
          if (loc === null) break;
          await res.body?.cancel();
          const next = new URL(loc, res.url || url);
          const h: Record<string, string> = { "user-agent": this.o.userAgent, ...spec.headers };
          if (next.origin === this.origin && sentAuth !== undefined) h.authorization = sentAuth;
          res = await fetch(next, { method: spec.method, headers: h, signal: wd.signal, redirect: "manual" });
          wd.touch();
          hops++;
        }
        if (res.status === 401 && sameOrigin) {
          const header = res.headers.get("www-authenticate");
          await res.body?.cancel();
          // A valid token without the rights asked for: one fresh token may help (rights granted
          // since it was cached), more will not.
          const insufficient = sentAuth !== undefined && header !== null && pickChallenge(parseChallenges(header))?.params.error === "insufficient_scope";
          if (reauthentications < (insufficient ? 1 : 2) && this.o.auth.unauthorized(header, spec.scopes, sentAuth)) {
            reauthentications++;
            wd.done();
            continue;
          }
          wd.done();
          if (insufficient) {
            const wanted = spec.scopes.map(formatScope).join(" ");
            return { retryable: false, error: this.error("denied", spec, `the credentials do not grant ${wanted === "" ? "access" : wanted}`, { status: 401 }) };
          }
          return { retryable: false, error: this.error("unauthorized", spec, sentAuth === undefined ? "authentication required and no credentials are configured for this registry" : "credentials refused", { status: 401 }) };
        }
        if (spec.ok.includes(res.status)) {
          if (spec.stream === true && res.body !== null) {
            return { status: res.status, headers: res.headers, url: res.url || url, body: watched(res.body, wd), bytes: new Uint8Array(0) };
          }
          const bytes = spec.method === "HEAD" ? new Uint8Array(0) : await readLimited(res, MAX_BODY, wd.touch);
          wd.done();
          return { status: res.status, headers: res.headers, url: res.url || url, body: null, bytes };
        }
        return await this.failure(spec, res, wd, sentAuth);
      } catch (e) {
        wd.done();
        if (e instanceof RegistryError) return { retryable: e.kind === "unavailable", error: e };
        const reason: unknown = wd.signal.aborted ? wd.signal.reason : undefined;
        if (reason instanceof DeadlineExceeded) return { retryable: false, error: this.error("timeout", spec, "deadline exceeded") };
        if (reason instanceof AttemptTimeout) return { retryable: true, error: this.error("timeout", spec, `no progress for ${this.o.timeoutMs} ms`) };
        if (wd.signal.aborted) return { retryable: false, error: this.error("aborted", spec, "cancelled by the caller") };
        return { retryable: true, error: this.error("unavailable", spec, `connection to ${this.o.registry} failed: ${causeText(e)}`) };
      }
    }
  }

  private async failure(spec: RequestSpec, res: Response, wd: Watchdog, sentAuth: string | undefined): Promise<AttemptFailure> {
    let text = "";
    try {
      text = spec.method === "HEAD" ? "" : new TextDecoder().decode(await readLimited(res, MAX_ERROR_BODY, wd.touch, true));
    } catch {
      // the error body is best effort
    }
    wd.done();
    const { code, message } = parseErrorBody(text);
    const s = res.status;
    const extra = { status: s, ...(code === undefined ? {} : { code }) };
    const detail = message ?? (res.statusText || "error");
    if (s === 429 || s >= 500) {
      return { retryable: true, retryAfterMs: parseRetryAfter(res.headers.get("retry-after")), error: this.error("unavailable", spec, `registry unavailable: ${detail}`, extra) };
    }
    let kind: RegistryErrorKind;
    if (s === 401) kind = "unauthorized";
    else if (s === 403 || code === "DENIED") kind = "denied";
    else if (s === 404) kind = "not-found";
    else if (s === 405) kind = spec.method === "DELETE" ? "deletion-unsupported" : "unsupported";
    else if (code === "DIGEST_INVALID" || code === "SIZE_INVALID") kind = "digest-mismatch";
    else if (s >= 400 && s < 500) kind = "invalid";
    else kind = "protocol";
    const reason =
      kind === "deletion-unsupported"
        ? `the registry does not allow deleting (${detail})`
        : kind === "unauthorized" && sentAuth === undefined
          ? "authentication required and no credentials are configured for this registry"
          : detail;
    return { retryable: false, error: this.error(kind, spec, reason, extra) };
  }
}

function withAttempts(e: RegistryError, attempts: number): RegistryError {
  if (attempts <= 1) return e;
  return new RegistryError({ kind: e.kind, operation: e.operation, registry: e.registry, repository: e.repository, status: e.status, code: e.code, attempts, reason: reasonOf(e) });
}

function reasonOf(e: RegistryError): string {
  // The constructor formats "registry <op> <where>: <reason>[ (HTTP …)]"; recover the reason part.
  const head = `registry ${e.operation} ${e.repository === undefined ? e.registry : `${e.registry}/${e.repository}`}: `;
  let r = e.message.startsWith(head) ? e.message.slice(head.length) : e.message;
  if (e.status !== undefined) {
    const tail = ` (HTTP ${e.status}${e.code === undefined ? "" : ` ${e.code}`})`;
    if (r.endsWith(tail)) r = r.slice(0, -tail.length);
  }
  return r;
}

/** Registry error bodies: `{"errors":[{"code":"…","message":"…","detail":…}]}`. */
export function parseErrorBody(text: string): { code: string | undefined; message: string | undefined } {
  try {
    const doc: unknown = JSON.parse(text);
    if (typeof doc === "object" && doc !== null && "errors" in doc && Array.isArray(doc.errors)) {
      const first: unknown = doc.errors[0];
      if (typeof first === "object" && first !== null) {
        const f = first as { code?: unknown; message?: unknown };
        return {
          code: typeof f.code === "string" ? f.code : undefined,
          message: typeof f.message === "string" ? f.message.slice(0, 300) : undefined,
        };
      }
    }
  } catch {
    // not JSON
  }
  const trimmed = text.trim().slice(0, 200);
  return { code: undefined, message: trimmed === "" ? undefined : trimmed };
}

async function readLimited(res: Response, limit: number, touch: () => void, truncate = false): Promise<Uint8Array> {
  if (res.body === null) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let total = 0;
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    touch();
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel();
      if (truncate) break;
      throw new Error(`response body larger than ${limit} bytes`);
    }
    parts.push(value);
  }
  return Buffer.concat(parts);
}

async function* watched(body: ReadableStream<Uint8Array>, wd: Watchdog): AsyncIterable<Uint8Array> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      wd.touch();
      yield value;
    }
  } finally {
    wd.done();
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}
