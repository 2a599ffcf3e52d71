// Registry authentication: Basic, and Bearer tokens obtained from the token service named in the
// registry's `WWW-Authenticate` challenge (docker/distribution token spec, OAuth2 refresh tokens for
// identity tokens). Tokens are cached per scope set until shortly before they expire.
import { type AuthChallenge, formatScope, mergeScopes, parseChallenges, pickChallenge, type Scope, scopeKey } from "./challenge.js";
import type { RegistryCredentials } from "./docker-config.js";
import { RegistryError, type Scrubber } from "./errors.js";
import type { RegistryLogger } from "./log.js";

export const CLIENT_ID = "sandbox-snapshot-controller";

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

export interface AuthContext {
  readonly operation: string;
  readonly repository: string | undefined;
  readonly signal: AbortSignal;
}

export interface AuthenticatorOptions {
  readonly registry: string;
  readonly insecure: boolean;
  readonly credentials: RegistryCredentials | undefined;
  readonly scrubber: Scrubber;
  readonly logger: RegistryLogger;
  readonly now?: () => number;
}

export class Authenticator {
  private challenge: AuthChallenge | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly pending = new Map<string, Promise<CachedToken>>();
  private readonly now: () => number;

  constructor(private readonly o: AuthenticatorOptions) {
    this.now = o.now ?? Date.now;
    const c = o.credentials;
    if (c !== undefined) {
      o.scrubber.add(c.password);
      o.scrubber.add(c.identityToken);
      o.scrubber.add(c.registryToken);
      if (c.username !== undefined && c.password !== undefined) o.scrubber.add(basicValue(c.username, c.password));
    }
  }

  /** The scheme the registry asked for, once known. */
  get scheme(): string | undefined {
    return this.challenge?.scheme;
  }

  /**
   * The Authorization header value for a request needing `scopes`, or undefined when the registry has
   * not asked for credentials (yet). May call the token service.
   */
  async authorization(scopes: readonly Scope[], ctx: AuthContext): Promise<string | undefined> {
    const ch = this.challenge;
    if (ch === undefined) return undefined;
    const c = this.o.credentials;
    if (ch.scheme === "basic") {
      if (c?.username === undefined || c.password === undefined) return undefined;
      return `Basic ${basicValue(c.username, c.password)}`;
    }
    if (ch.scheme === "bearer") {
      if (c?.registryToken !== undefined) return `Bearer ${c.registryToken}`;
      const token = await this.token(ch, scopes, ctx);
      return `Bearer ${token.token}`;
    }
    return undefined;
  }

  /**
   * Called on a 401. Records the challenge and forgets the token that was refused. Returns whether
   * a new attempt with fresh credentials can succeed.
   */
  unauthorized(header: string | null, scopes: readonly Scope[], sent: string | undefined): boolean {
    const ch = header === null ? undefined : pickChallenge(parseChallenges(header));
    if (ch === undefined) return false;
    const previous = this.challenge;
    this.challenge = ch;
    if (ch.scheme === "bearer") {
      const key = scopeKey(this.tokenScopes(ch, scopes));
      const cached = this.tokens.get(key);
      if (cached !== undefined && sent === `Bearer ${cached.token}`) this.tokens.delete(key);
      if (this.o.credentials?.registryToken !== undefined) return sent === undefined;
      // A fresh token is worth a try whenever the one we sent (if any) was a cached one, or none was sent.
      return true;
    }
    if (ch.scheme === "basic") {
      const c = this.o.credentials;
      const haveBasic = c?.username !== undefined && c.password !== undefined;
      // Retry once when we had not sent Basic credentials yet; a refused Basic header is final.
      return haveBasic && (sent === undefined || previous?.scheme !== "basic");
    }
    return false;
  }

  /**
   * The scopes a token is requested for: exactly what the operation needs. (A challenge's own `scope`
   * describes the request that was refused, which may be another one than the next: not merged in.)
   */
  private tokenScopes(_ch: AuthChallenge, scopes: readonly Scope[]): Scope[] {
    return mergeScopes(scopes);
  }

  private async token(ch: AuthChallenge, scopes: readonly Scope[], ctx: AuthContext): Promise<CachedToken> {
    const wanted = this.tokenScopes(ch, scopes);
    const key = scopeKey(wanted);
    const cached = this.tokens.get(key);
    if (cached !== undefined && cached.expiresAt > this.now()) return cached;
    const inflight = this.pending.get(key);
    if (inflight !== undefined) return inflight;
    const p = this.fetchToken(ch, wanted, ctx).finally(() => this.pending.delete(key));
    this.pending.set(key, p);
    const t = await p;
    this.tokens.set(key, t);
    return t;
  }

  private fail(ctx: AuthContext, kind: "unauthorized" | "denied" | "unavailable" | "protocol", reason: string, status?: number): RegistryError {
    return new RegistryError({
      kind,
      operation: ctx.operation,
      registry: this.o.registry,
      repository: ctx.repository,
      status,
      reason: this.o.scrubber.scrub(reason),
    });
  }

  private async fetchToken(ch: AuthChallenge, scopes: readonly Scope[], ctx: AuthContext): Promise<CachedToken> {
    const realmText = ch.params.realm;
    if (realmText === undefined || realmText === "") throw this.fail(ctx, "protocol", "Bearer challenge without a realm");
    let realm: URL;
    try {
      realm = new URL(realmText);
    } catch {
      throw this.fail(ctx, "protocol", `Bearer challenge realm ${JSON.stringify(realmText)} is not a URL`);
    }
    if (realm.protocol !== "https:" && realm.protocol !== "http:") throw this.fail(ctx, "protocol", `token service ${realm.origin} is not http(s)`);
    const c = this.o.credentials;
    const hasSecret = c?.identityToken !== undefined || (c?.username !== undefined && c.password !== undefined);
    if (realm.protocol === "http:" && hasSecret && !this.o.insecure) {
      throw this.fail(ctx, "protocol", `refusing to send credentials to the plain-HTTP token service ${realm.origin} (the registry is not configured insecure)`);
    }
    const service = ch.params.service;
    const scopeStrings = scopes.map(formatScope);
    const tokenHost = realm.host;
    let res: Response;
    try {
      if (c?.identityToken !== undefined) {
        const form = new URLSearchParams();
        form.set("grant_type", "refresh_token");
        form.set("refresh_token", c.identityToken);
        form.set("client_id", CLIENT_ID);
        if (service !== undefined) form.set("service", service);
        if (scopeStrings.length > 0) form.set("scope", scopeStrings.join(" "));
        res = await fetch(realm, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
          body: form.toString(),
          signal: ctx.signal,
          redirect: "error",
        });
      } else {
        const url = new URL(realm);
        if (service !== undefined) url.searchParams.set("service", service);
        for (const s of scopeStrings) url.searchParams.append("scope", s);
        url.searchParams.set("client_id", CLIENT_ID);
        const headers: Record<string, string> = {};
        if (c?.username !== undefined && c.password !== undefined) headers.authorization = `Basic ${basicValue(c.username, c.password)}`;
        res = await fetch(url, { method: "GET", headers, signal: ctx.signal, redirect: "error" });
      }
    } catch (e) {
      if (ctx.signal.aborted) throw e; // the caller maps timeouts and aborts
      throw this.fail(ctx, "unavailable", `token service ${tokenHost} unreachable: ${causeText(e)}`);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw this.fail(ctx, res.status === 401 ? "unauthorized" : "denied", `token service ${tokenHost} refused the credentials${c === undefined ? " (no credentials configured)" : ""}`, res.status);
    }
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel();
      throw this.fail(ctx, "unavailable", `token service ${tokenHost} unavailable`, res.status);
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw this.fail(ctx, "protocol", `token service ${tokenHost} answered an unexpected status`, res.status);
    }
    let doc: unknown;
    try {
      doc = await res.json();
    } catch {
      throw this.fail(ctx, "protocol", `token service ${tokenHost} answered a body that is not JSON`);
    }
    const rec = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
    const token = typeof rec.access_token === "string" && rec.access_token !== "" ? rec.access_token : rec.token;
    if (typeof token !== "string" || token === "") throw this.fail(ctx, "protocol", `token service ${tokenHost} answered no token`);
    this.o.scrubber.add(token);
    if (typeof rec.refresh_token === "string") this.o.scrubber.add(rec.refresh_token);
    const expiresIn = typeof rec.expires_in === "number" && rec.expires_in > 0 ? rec.expires_in : 60;
    // Renew a little early so a token does not expire between our check and the registry's.
    const margin = Math.min(10_000, expiresIn * 100);
    this.o.logger.debug({ registry: this.o.registry, tokenService: tokenHost, scope: scopeStrings.join(" "), expiresIn }, "registry token obtained");
    return { token, expiresAt: this.now() + expiresIn * 1000 - margin };
  }
}

export function basicValue(username: string, password: string): string {
  return Buffer.from(`${username}:${password}`, "utf8").toString("base64");
}

export function causeText(e: unknown): string {
  if (e instanceof Error) {
    const cause: unknown = e.cause;
    if (cause instanceof Error) {
      const code = (cause as { code?: unknown }).code;
      return typeof code === "string" ? code : cause.message;
    }
    return e.message;
  }
  return String(e);
}
