// Typed errors of the registry client. A message names the operation, the registry and the
// repository, and never carries a credential: every message goes through a Scrubber first.

export type RegistryErrorKind =
  | "not-found" // manifest, blob or upload unknown (404)
  | "unauthorized" // 401: no or wrong credentials (also from the token service)
  | "denied" // 403, or a registry DENIED error code
  | "deletion-unsupported" // 405 on DELETE: deletion disabled, or the registry refuses API deletes
  | "unsupported" // 405 on any other operation
  | "digest-mismatch" // the registry (or we) computed another digest than the one declared
  | "invalid" // 400 other than a digest mismatch: bad name, bad manifest, unknown blob in a manifest…
  | "unavailable" // connection errors, 429 and 5xx after all retries
  | "timeout" // the per-call timeout or the caller's deadline ran out
  | "aborted" // the caller's AbortSignal fired
  | "invalid-config" // a docker config file or an option is malformed
  | "protocol"; // the registry answered something the distribution spec does not allow

export interface RegistryErrorDetails {
  kind: RegistryErrorKind;
  operation: string;
  registry: string;
  repository?: string | undefined;
  status?: number | undefined;
  /** First error code of the registry's JSON error body, e.g. MANIFEST_UNKNOWN. */
  code?: string | undefined;
  /** What went wrong, already scrubbed of credentials. */
  reason: string;
  /** Number of attempts made (retries + 1). */
  attempts?: number | undefined;
}

export class RegistryError extends Error {
  readonly kind: RegistryErrorKind;
  readonly operation: string;
  readonly registry: string;
  readonly repository: string | undefined;
  readonly status: number | undefined;
  readonly code: string | undefined;
  readonly attempts: number | undefined;

  constructor(d: RegistryErrorDetails) {
    const where = d.repository === undefined ? d.registry : `${d.registry}/${d.repository}`;
    const status = d.status === undefined ? "" : ` (HTTP ${d.status}${d.code === undefined ? "" : ` ${d.code}`})`;
    const attempts = d.attempts !== undefined && d.attempts > 1 ? ` after ${d.attempts} attempts` : "";
    super(`registry ${d.operation} ${where}: ${d.reason}${status}${attempts}`);
    this.name = "RegistryError";
    this.kind = d.kind;
    this.operation = d.operation;
    this.registry = d.registry;
    this.repository = d.repository;
    this.status = d.status;
    this.code = d.code;
    this.attempts = d.attempts;
  }

  /** Whether retrying the same call later may succeed. */
  get transient(): boolean {
    return this.kind === "unavailable" || this.kind === "timeout";
  }
}

export function isRegistryError(e: unknown, kind?: RegistryErrorKind): e is RegistryError {
  return e instanceof RegistryError && (kind === undefined || e.kind === kind);
}

/**
 * Removes credentials from text: every registered secret value (passwords, base64 `auth` strings,
 * identity and bearer tokens) and anything that looks like an Authorization header value or a JWT.
 */
export class Scrubber {
  private readonly secrets = new Set<string>();

  add(secret: string | undefined): void {
    // Very short values would blank out ordinary words; credentials are never that short in practice.
    if (secret !== undefined && secret.length >= 4) this.secrets.add(secret);
  }

  scrub(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join("[redacted]");
    out = out.replace(/\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]+/gi, "$1 [redacted]");
    out = out.replace(/eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, "[redacted-jwt]");
    out = out.replace(/((?:access_|refresh_|identity)?token|password|passwd|secret|auth)=[^&\s"']+/gi, "$1=[redacted]");
    return out;
  }
}
