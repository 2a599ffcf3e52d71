// OCI distribution client for one registry host: ping, blobs (HEAD, monolithic/streamed/chunked
// upload, cross-repository mount, download), manifests (PUT/GET/HEAD/DELETE, annotations, tags).
import { Readable } from "node:stream";
import { Authenticator } from "./auth.js";
import { type BlobSource, chunksOf, describeSource, openSource, pieces, sourceSize } from "./blob-source.js";
import { repositoryScope, type Scope } from "./challenge.js";
import { DigestCounter, sha256Digest } from "./digest.js";
import { credentialsFor, DockerConfigError, loadDockerConfig, type RegistryCredentials } from "./docker-config.js";
import { isRegistryError, RegistryError, Scrubber } from "./errors.js";
import { type RegistryLogger, scrubbingLogger } from "./log.js";
import { type ImageIndex, type ImageManifest, MANIFEST_MEDIA_TYPES } from "./media-types.js";
import { isDigest, isValidRegistryHost, isValidRepository, isValidTag } from "./reference.js";
import { backoffDelay, type RetryPolicy, retryPolicy, sleep } from "./retry.js";
import { type BodyFactory, type CallOptions, deadlineOf, type RegistryResponse, Transport } from "./transport.js";

export type { CallOptions } from "./transport.js";
export type { BlobSource } from "./blob-source.js";

export interface RegistryClientOptions {
  /** Registry `host[:port]`, e.g. `registry.example.com` or `127.0.0.1:5000`. */
  readonly registry: string;
  /** Plain HTTP. Only when explicitly true; never guessed from the host name. Default false (HTTPS). */
  readonly insecure?: boolean;
  /** A docker config file, or a directory holding `config.json` (`$DOCKER_CONFIG`). Missing = anonymous. */
  readonly dockerConfigPath?: string;
  /** Credentials given directly; win over `dockerConfigPath`. */
  readonly credentials?: RegistryCredentials;
  /** Timeout of one attempt without progress, in ms (default 30 000). */
  readonly timeoutMs?: number;
  readonly retry?: Partial<RetryPolicy>;
  /** A pino logger fits; every line is scrubbed of credentials. */
  readonly logger?: RegistryLogger;
  readonly userAgent?: string;
}

export interface BlobInfo {
  readonly digest: string;
  readonly size: number;
}

export interface PushBlobOptions extends CallOptions {
  /** Expected digest. Needed to skip or mount a factory source; computed for files and bytes when absent. */
  readonly digest?: string;
  /** Repositories of the same registry that may hold the blob: tried with a cross-repository mount. */
  readonly mountFrom?: readonly string[];
  /** Upload in PATCH chunks of this many bytes; default a single (monolithic or streamed) request. */
  readonly chunkSize?: number;
  /** HEAD first and skip an existing blob (default true). */
  readonly skipExisting?: boolean;
}

export interface PushBlobResult extends BlobInfo {
  readonly outcome: "exists" | "mounted" | "uploaded";
}

export interface ManifestInfo {
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
}

export interface FetchedManifest extends ManifestInfo {
  readonly bytes: Uint8Array;
  readonly manifest: ImageManifest | ImageIndex;
  readonly annotations: Readonly<Record<string, string>>;
}

export type DeleteOutcome = "deleted" | "not-found";

const DEFAULT_TIMEOUT_MS = 30_000;
const USER_AGENT = "sandbox-snapshot-controller/0.1";

export class RegistryClient {
  readonly registry: string;
  readonly insecure: boolean;
  private readonly transport: Transport;
  private readonly policy: RetryPolicy;
  private readonly logger: RegistryLogger;
  private readonly scrubber: Scrubber;

  /** Creates a client, reading credentials from `dockerConfigPath` when given. */
  static async create(options: RegistryClientOptions): Promise<RegistryClient> {
    let credentials = options.credentials;
    if (credentials === undefined && options.dockerConfigPath !== undefined && options.dockerConfigPath !== "") {
      let config;
      try {
        config = await loadDockerConfig(options.dockerConfigPath);
      } catch (e) {
        if (e instanceof DockerConfigError) {
          throw new RegistryError({ kind: "invalid-config", operation: "configure", registry: options.registry, reason: e.message });
        }
        throw e;
      }
      credentials = credentialsFor(config, options.registry);
      const client = new RegistryClient({ ...options, credentials });
      if (credentials === undefined) {
        const helper = config !== undefined && (config.helperHosts.size > 0 || config.credsStore !== undefined);
        client.logger.info(
          { registry: options.registry, dockerConfig: options.dockerConfigPath },
          helper ? "no inline credentials for this registry (credential helpers are not supported); using anonymous access" : "no credentials for this registry; using anonymous access",
        );
      }
      return client;
    }
    return new RegistryClient({ ...options, credentials });
  }

  constructor(options: RegistryClientOptions) {
    if (!isValidRegistryHost(options.registry)) {
      throw new RegistryError({ kind: "invalid-config", operation: "configure", registry: JSON.stringify(options.registry), reason: "registry must be host[:port] without scheme or path" });
    }
    this.registry = options.registry;
    this.insecure = options.insecure === true;
    this.scrubber = new Scrubber();
    this.logger = scrubbingLogger(options.logger, this.scrubber);
    this.policy = retryPolicy(options.retry);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new RangeError("timeoutMs must be > 0");
    const auth = new Authenticator({ registry: this.registry, insecure: this.insecure, credentials: options.credentials, scrubber: this.scrubber, logger: this.logger });
    this.transport = new Transport({
      registry: this.registry,
      insecure: this.insecure,
      timeoutMs,
      retry: this.policy,
      auth,
      scrubber: this.scrubber,
      logger: this.logger,
      userAgent: options.userAgent ?? USER_AGENT,
    });
  }

  /** GET /v2/: reachability, credentials, and that this is a distribution v2 API. */
  async ping(call?: CallOptions): Promise<{ apiVersion: string | undefined }> {
    const res = await this.transport.request({ operation: "ping", method: "GET", url: "/v2/", scopes: [], ok: [200] }, call);
    const apiVersion = res.headers.get("docker-distribution-api-version") ?? undefined;
    if (apiVersion !== undefined && !apiVersion.split(/[\s,]+/).includes("registry/2.0")) {
      throw this.transport.error("protocol", { operation: "ping" }, `unsupported API version ${JSON.stringify(apiVersion)} (want registry/2.0)`);
    }
    return { apiVersion };
  }

  // ---- blobs -------------------------------------------------------------------------------

  /** HEAD a blob: its size, or undefined when the repository does not have it. */
  async statBlob(repository: string, digest: string, call?: CallOptions): Promise<BlobInfo | undefined> {
    const op = "blob-head";
    this.check(op, repository, digest);
    const res = await this.transport.request(
      { operation: op, repository, method: "HEAD", url: `/v2/${repository}/blobs/${digest}`, scopes: [repositoryScope(repository, "pull")], ok: [200, 404] },
      call,
    );
    if (res.status === 404) return undefined;
    const len = Number(res.headers.get("content-length") ?? "NaN");
    return { digest, size: Number.isFinite(len) ? len : -1 };
  }

  /**
   * Tries a cross-repository mount of `digest` from `from` into `repository`. True when mounted (201);
   * false when the registry answered 202 (not mountable: it opened an upload, which we cancel).
   */
  async mountBlob(repository: string, digest: string, from: string, call?: CallOptions): Promise<boolean> {
    const op = "blob-mount";
    this.check(op, repository, digest);
    this.check(op, from);
    const q = new URLSearchParams({ mount: digest, from });
    const res = await this.transport.request(
      {
        operation: op,
        repository,
        method: "POST",
        url: `/v2/${repository}/blobs/uploads/?${q.toString()}`,
        headers: { "content-length": "0" },
        scopes: [repositoryScope(repository, "pull", "push"), repositoryScope(from, "pull")],
        ok: [201, 202],
      },
      call,
    );
    if (res.status === 201) return true;
    const loc = res.headers.get("location");
    if (loc !== null) await this.cancelUpload(repository, this.transport.resolve(loc, res.url), call);
    return false;
  }

  /**
   * Makes `repository` hold a blob: skips it when it exists (HEAD), mounts it from `mountFrom` where
   * possible, else uploads it — monolithically when the digest is known, streamed (PATCH then PUT)
   * when not, in PATCH chunks with `chunkSize`. The digest is computed while streaming and sent with
   * the final PUT, so the registry rejects corrupt bytes (`digest-mismatch`). Transient failures
   * restart the upload from a freshly opened source, with backoff, within the caller's bounds.
   */
  async pushBlob(repository: string, source: BlobSource, opts: PushBlobOptions = {}): Promise<PushBlobResult> {
    const op = "blob-upload";
    this.check(op, repository, opts.digest);
    const call: CallOptions = { signal: opts.signal, deadline: deadlineOf(opts) };
    let digest = opts.digest;
    let size: number | undefined;
    try {
      if (digest === undefined) {
        const d = await describeSource(source);
        if (d !== undefined) ({ digest, size } = d);
      } else {
        size = await sourceSize(source);
      }
    } catch (e) {
      const code = typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : String(e);
      throw this.transport.error("invalid", { operation: op, repository }, `cannot read the blob source${"path" in source ? ` ${source.path}` : ""}: ${code}`);
    }
    if (opts.chunkSize !== undefined && !(Number.isInteger(opts.chunkSize) && opts.chunkSize > 0)) {
      throw this.transport.error("invalid-config", { operation: op, repository }, "chunkSize must be a positive integer");
    }
    if (digest !== undefined) {
      if (opts.skipExisting !== false) {
        const have = await this.statBlob(repository, digest, call);
        if (have !== undefined) return { digest, size: have.size, outcome: "exists" };
      }
      for (const from of opts.mountFrom ?? []) {
        if (from === repository) continue;
        try {
          if (await this.mountBlob(repository, digest, from, call)) {
            this.logger.debug({ registry: this.registry, repository, from, digest }, "blob mounted across repositories");
            return { digest, size: size ?? (await this.statBlob(repository, digest, call))?.size ?? -1, outcome: "mounted" };
          }
        } catch (e) {
          // A refused mount (e.g. no pull right on `from`) falls back to an upload.
          if (!isRegistryError(e) || e.transient || e.kind === "aborted") throw e;
          this.logger.debug({ registry: this.registry, repository, from, error: e.message }, "cross-repository mount refused; uploading");
        }
      }
    }
    let attempt = 0;
    for (;;) {
      attempt++;
      try {
        const r = await this.uploadOnce(repository, source, digest, size, opts.chunkSize, call);
        return { ...r, outcome: "uploaded" };
      } catch (e) {
        if (!isRegistryError(e) || !e.transient || attempt >= this.policy.maxAttempts) throw e;
        const delay = backoffDelay(this.policy, attempt);
        const deadline = call.deadline;
        if (deadline !== undefined && Date.now() + delay >= deadline) throw e;
        this.logger.warn({ registry: this.registry, repository, attempt, delayMs: delay, error: e.message }, "blob upload failed, restarting it");
        try {
          await sleep(delay, call.signal);
        } catch {
          throw this.transport.error("aborted", { operation: op, repository }, "cancelled by the caller", { attempts: attempt });
        }
        // The previous attempt may have completed just before the connection broke.
        if (digest !== undefined) {
          const have = await this.statBlob(repository, digest, call).catch(() => undefined);
          if (have !== undefined) return { digest, size: have.size, outcome: "uploaded" };
        }
      }
    }
  }

  private async uploadOnce(repository: string, source: BlobSource, digest: string | undefined, size: number | undefined, chunkSize: number | undefined, call: CallOptions): Promise<BlobInfo> {
    const tracker: SourceTracker = { error: undefined };
    try {
      return await this.uploadAttempt(repository, source, digest, size, chunkSize, call, tracker);
    } catch (e) {
      const cause = tracker.error ?? (isRegistryError(e) ? undefined : e);
      if (cause === undefined) throw e;
      // The source failed, not the registry: a RegistryError (e.g. from openBlob of another registry)
      // keeps its kind; anything else is treated as transient, and the upload restarts from a fresh source.
      if (cause instanceof RegistryError) throw cause;
      throw this.transport.error("unavailable", { operation: "blob-upload", repository }, `reading the blob source failed: ${cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "unknown error"}`);
    }
  }

  private async uploadAttempt(repository: string, source: BlobSource, digest: string | undefined, size: number | undefined, chunkSize: number | undefined, call: CallOptions, tracker: SourceTracker): Promise<BlobInfo> {
    const op = "blob-upload";
    const scopes = [repositoryScope(repository, "pull", "push")];
    const start = await this.transport.request(
      { operation: op, repository, method: "POST", url: `/v2/${repository}/blobs/uploads/`, headers: { "content-length": "0" }, scopes, ok: [202] },
      call,
    );
    let location = this.location(start, op, repository);
    let finalDigest: string;
    let finalSize = size;
    let body: CountingBody | undefined;
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };

    if (chunkSize !== undefined) {
      const r = await this.uploadChunks(repository, source, location, size, chunkSize, call, tracker);
      location = r.location;
      finalSize = r.size;
      finalDigest = r.digest ?? digest ?? "";
      if (digest !== undefined && finalDigest !== digest) return this.mismatch(repository, location, finalDigest, digest, call);
      headers["content-length"] = "0";
    } else if (digest === undefined) {
      // Streamed upload: one PATCH of unknown length, digest computed on the way, then PUT ?digest=.
      const streamed = new CountingBody(source, tracker);
      const res = await this.transport.request(
        { operation: op, repository, method: "PATCH", url: location, headers, body: streamed.factory, scopes, ok: [202], retry: false },
        call,
      );
      location = this.location(res, op, repository);
      finalDigest = streamed.digest();
      finalSize = streamed.size();
      headers["content-length"] = "0";
    } else {
      // Monolithic upload: the bytes go with the PUT that names the digest; the registry verifies it.
      finalDigest = digest;
      body = new CountingBody(source, tracker);
      if (size !== undefined) headers["content-length"] = String(size);
    }
    const url = new URL(location);
    url.searchParams.set("digest", finalDigest);
    const done = await this.transport.request(
      { operation: op, repository, method: "PUT", url: url.toString(), headers, ...(body === undefined ? {} : { body: body.factory }), scopes, ok: [201], retry: false },
      call,
    );
    if (body !== undefined && body.digest() !== finalDigest) {
      throw this.transport.error("digest-mismatch", { operation: op, repository }, `the bytes read have digest ${body.digest()}, expected ${finalDigest}`);
    }
    const answered = done.headers.get("docker-content-digest");
    if (answered !== null && answered !== finalDigest) {
      throw this.transport.error("digest-mismatch", { operation: op, repository }, `the registry stored digest ${answered}, expected ${finalDigest}`);
    }
    return { digest: finalDigest, size: body?.size() ?? finalSize ?? -1 };
  }

  private async mismatch(repository: string, location: string, actual: string, expected: string, call: CallOptions): Promise<never> {
    await this.cancelUpload(repository, location, call);
    throw this.transport.error("digest-mismatch", { operation: "blob-upload", repository }, `the bytes read have digest ${actual}, expected ${expected}`);
  }

  /**
   * PATCH chunks with Content-Range. A file is read in ranges (nothing buffered); any other source is
   * cut into buffered pieces of `chunkSize` bytes, hashed once each. Returns the last upload location
   * and, for non-file sources, the digest computed on the way.
   */
  private async uploadChunks(repository: string, source: BlobSource, location: string, size: number | undefined, chunkSize: number, call: CallOptions, tracker: SourceTracker): Promise<{ location: string; digest: string | undefined; size: number }> {
    const op = "blob-upload";
    const scopes = [repositoryScope(repository, "pull", "push")];
    let offset = 0;
    let loc = location;
    const send = async (body: BodyFactory, length: number): Promise<void> => {
      const end = offset + length - 1;
      const res = await this.transport.request(
        {
          operation: op,
          repository,
          method: "PATCH",
          url: loc,
          headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${end}`, "content-length": String(length) },
          body,
          scopes,
          ok: [202],
          retry: false,
        },
        call,
      );
      const range = res.headers.get("range");
      if (range !== null && range !== `0-${end}`) {
        throw this.transport.error("protocol", { operation: op, repository }, `registry acknowledged range ${range}, expected 0-${end}`);
      }
      loc = this.location(res, op, repository);
      offset = end + 1;
    };
    if ("path" in source && size !== undefined) {
      while (offset < size) {
        const length = Math.min(chunkSize, size - offset);
        const from = offset;
        await send((touch) => lazyChunks(() => openSource(source, from, from + length - 1), touch, tracker), length);
      }
      return { location: loc, digest: undefined, size: offset };
    }
    const counter = new DigestCounter();
    const stream = await openSource(source);
    for await (const piece of pieces(stream, chunkSize)) {
      counter.update(piece);
      await send(() => piece, piece.byteLength);
    }
    return { location: loc, digest: counter.digest(), size: counter.size };
  }

  /** Opens a blob for reading; the stream fails with `digest-mismatch` if the bytes do not match. */
  async openBlob(repository: string, digest: string, call?: CallOptions): Promise<Readable> {
    const op = "blob-get";
    this.check(op, repository, digest);
    const res = await this.transport.request(
      { operation: op, repository, method: "GET", url: `/v2/${repository}/blobs/${digest}`, scopes: [repositoryScope(repository, "pull")], ok: [200], stream: true },
      call,
    );
    const body = res.body;
    if (body === null) throw this.transport.error("protocol", { operation: op, repository }, "blob answer without a body");
    const counter = new DigestCounter();
    const transport = this.transport;
    const registry = this.registry;
    async function* verified(): AsyncGenerator<Uint8Array> {
      try {
        for await (const c of body ?? []) {
          counter.update(c);
          yield c;
        }
      } catch (e) {
        throw transport.error("unavailable", { operation: op, repository }, `download from ${registry} interrupted: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (digest.startsWith("sha256:") && counter.digest() !== digest) {
        throw transport.error("digest-mismatch", { operation: op, repository }, `downloaded bytes have digest ${counter.digest()}, expected ${digest}`);
      }
    }
    return Readable.from(verified(), { objectMode: false });
  }

  private async cancelUpload(repository: string, location: string, call?: CallOptions): Promise<void> {
    try {
      await this.transport.request(
        { operation: "blob-upload-cancel", repository, method: "DELETE", url: location, scopes: [repositoryScope(repository, "pull", "push")], ok: [200, 202, 204, 404], retry: false },
        { signal: call?.signal, deadline: deadlineOf({ deadline: call?.deadline, budgetMs: 5_000 }) },
      );
    } catch (e) {
      this.logger.debug({ registry: this.registry, repository, error: e instanceof Error ? e.message : String(e) }, "could not cancel an upload session (the registry purges it later)");
    }
  }

  // ---- manifests ---------------------------------------------------------------------------

  /**
   * PUT a manifest under a tag or its digest. Returns its digest (sha256 of the exact bytes sent,
   * checked against the registry's `Docker-Content-Digest`).
   */
  async putManifest(repository: string, reference: string, manifest: ImageManifest | ImageIndex | Uint8Array | string, opts: CallOptions & { mediaType?: string } = {}): Promise<ManifestInfo> {
    const op = "manifest-put";
    this.checkRef(op, repository, reference);
    const bytes = typeof manifest === "string" ? Buffer.from(manifest) : manifest instanceof Uint8Array ? manifest : Buffer.from(JSON.stringify(manifest));
    let mediaType = opts.mediaType;
    if (mediaType === undefined && !(manifest instanceof Uint8Array) && typeof manifest !== "string") mediaType = manifest.mediaType;
    if (mediaType === undefined) mediaType = mediaTypeOf(bytes);
    if (mediaType === undefined) throw this.transport.error("invalid", { operation: op, repository }, "manifest media type unknown: set mediaType");
    const digest = sha256Digest(bytes);
    if (isDigest(reference) && reference !== digest) {
      throw this.transport.error("digest-mismatch", { operation: op, repository }, `manifest bytes have digest ${digest}, not the reference ${reference}`);
    }
    const res = await this.transport.request(
      {
        operation: op,
        repository,
        method: "PUT",
        url: `/v2/${repository}/manifests/${reference}`,
        headers: { "content-type": mediaType },
        body: () => bytes,
        scopes: [repositoryScope(repository, "pull", "push")],
        ok: [201],
      },
      opts,
    );
    const answered = res.headers.get("docker-content-digest");
    if (answered !== null && answered !== digest) {
      throw this.transport.error("digest-mismatch", { operation: op, repository }, `registry answered digest ${answered}, expected ${digest}`);
    }
    return { digest, mediaType, size: bytes.byteLength };
  }

  /** GET a manifest by tag or digest; verifies the digest of the bytes received. */
  async getManifest(repository: string, reference: string, opts: CallOptions & { accept?: readonly string[] } = {}): Promise<FetchedManifest> {
    const op = "manifest-get";
    this.checkRef(op, repository, reference);
    const res = await this.transport.request(
      {
        operation: op,
        repository,
        method: "GET",
        url: `/v2/${repository}/manifests/${reference}`,
        headers: { accept: (opts.accept ?? MANIFEST_MEDIA_TYPES).join(", ") },
        scopes: [repositoryScope(repository, "pull")],
        ok: [200],
      },
      opts,
    );
    const bytes = res.bytes;
    const digest = sha256Digest(bytes);
    const expected = isDigest(reference) ? reference : res.headers.get("docker-content-digest");
    if (expected !== null && expected.startsWith("sha256:") && expected !== digest) {
      throw this.transport.error("digest-mismatch", { operation: op, repository }, `manifest bytes have digest ${digest}, expected ${expected}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw this.transport.error("protocol", { operation: op, repository }, "manifest is not JSON");
    }
    if (typeof parsed !== "object" || parsed === null) throw this.transport.error("protocol", { operation: op, repository }, "manifest is not a JSON object");
    const manifest = parsed as ImageManifest | ImageIndex;
    const contentType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    const mediaType = manifest.mediaType ?? (contentType !== "" ? contentType : (mediaTypeOf(bytes) ?? "application/octet-stream"));
    return { digest, mediaType, size: bytes.byteLength, bytes, manifest, annotations: stringRecord(manifest.annotations) };
  }

  /** HEAD a manifest: digest, media type and size, or undefined when it does not exist. */
  async headManifest(repository: string, reference: string, opts: CallOptions & { accept?: readonly string[] } = {}): Promise<ManifestInfo | undefined> {
    const op = "manifest-head";
    this.checkRef(op, repository, reference);
    const res = await this.transport.request(
      {
        operation: op,
        repository,
        method: "HEAD",
        url: `/v2/${repository}/manifests/${reference}`,
        headers: { accept: (opts.accept ?? MANIFEST_MEDIA_TYPES).join(", ") },
        scopes: [repositoryScope(repository, "pull")],
        ok: [200, 404],
      },
      opts,
    );
    if (res.status === 404) return undefined;
    const digest = res.headers.get("docker-content-digest") ?? (isDigest(reference) ? reference : null);
    const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
    const size = Number(res.headers.get("content-length") ?? "-1");
    if (digest === null) {
      // Some registries omit the header on HEAD; the GET computes it.
      const m = await this.getManifest(repository, reference, opts);
      return { digest: m.digest, mediaType: m.mediaType, size: m.size };
    }
    return { digest, mediaType, size: Number.isFinite(size) ? size : -1 };
  }

  /** The digest a tag points at, or undefined when the tag does not exist. */
  async resolveTag(repository: string, tag: string, opts: CallOptions = {}): Promise<string | undefined> {
    return (await this.headManifest(repository, tag, opts))?.digest;
  }

  /** A manifest's digest and annotations (empty object when it has none), or undefined when absent. */
  async manifestAnnotations(repository: string, reference: string, opts: CallOptions = {}): Promise<{ digest: string; annotations: Readonly<Record<string, string>> } | undefined> {
    try {
      const m = await this.getManifest(repository, reference, opts);
      return { digest: m.digest, annotations: m.annotations };
    } catch (e) {
      if (isRegistryError(e, "not-found")) return undefined;
      throw e;
    }
  }

  /**
   * DELETE a manifest by digest. "not-found" when it is already gone (404). Throws RegistryError
   * kind `deletion-unsupported` on 405 (deletion disabled or refused by the registry).
   */
  async deleteManifest(repository: string, digest: string, opts: CallOptions = {}): Promise<DeleteOutcome> {
    const op = "manifest-delete";
    this.check(op, repository);
    if (!isDigest(digest)) throw this.transport.error("invalid", { operation: op, repository }, `manifests are deleted by digest, got ${JSON.stringify(digest)}`);
    const res = await this.transport.request(
      { operation: op, repository, method: "DELETE", url: `/v2/${repository}/manifests/${digest}`, scopes: [repositoryScope(repository, "delete")], ok: [200, 202, 204, 404] },
      opts,
    );
    const outcome: DeleteOutcome = res.status === 404 ? "not-found" : "deleted";
    this.logger.debug({ registry: this.registry, repository, digest, outcome }, "manifest delete");
    return outcome;
  }

  // ---- helpers -----------------------------------------------------------------------------

  private check(operation: string, repository: string, digest?: string): void {
    if (!isValidRepository(repository)) {
      throw this.transport.error("invalid", { operation }, `repository ${JSON.stringify(repository)} is not a valid repository name`);
    }
    if (digest !== undefined && !isDigest(digest)) {
      throw this.transport.error("invalid", { operation, repository }, `${JSON.stringify(digest)} is not a digest (sha256:<64 hex>)`);
    }
  }

  private checkRef(operation: string, repository: string, reference: string): void {
    this.check(operation, repository);
    if (!isDigest(reference) && !isValidTag(reference)) {
      throw this.transport.error("invalid", { operation, repository }, `${JSON.stringify(reference)} is neither a tag nor a digest`);
    }
  }

  private location(res: RegistryResponse, operation: string, repository: string): string {
    const loc = res.headers.get("location");
    if (loc === null) throw this.transport.error("protocol", { operation, repository }, `HTTP ${res.status} without a Location header`);
    return this.transport.resolve(loc, res.url);
  }

  /** Scopes a caller would need for a push into `repository` (exposed for diagnostics). */
  static pushScopes(repository: string): Scope[] {
    return [repositoryScope(repository, "pull", "push")];
  }
}

/** Opens the source only when the transport starts sending, so every (re)send reads it afresh. */
async function* lazyChunks(open: () => Promise<Readable>, onChunk: (c: Uint8Array) => void, tracker?: SourceTracker): AsyncGenerator<Uint8Array> {
  try {
    yield* chunksOf(await open(), onChunk);
  } catch (e) {
    if (tracker !== undefined) tracker.error = e;
    throw e;
  }
}

/** Remembers a failure of the blob source itself, which fetch would otherwise report as a connection error. */
interface SourceTracker {
  error: unknown;
}

/** A request body over a blob source that hashes what it sends; each (re)send starts a new count. */
class CountingBody {
  private counter = new DigestCounter();

  constructor(
    private readonly source: BlobSource,
    private readonly tracker: SourceTracker,
  ) {}

  factory: BodyFactory = (touch) => {
    const c = new DigestCounter();
    this.counter = c;
    return lazyChunks(
      () => openSource(this.source),
      (b) => {
        c.update(b);
        touch();
      },
      this.tracker,
    );
  };

  digest(): string {
    return this.counter.digest();
  }

  size(): number {
    return this.counter.size;
  }
}

function stringRecord(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof v !== "object" || v === null) return out;
  for (const [k, x] of Object.entries(v)) if (typeof x === "string") out[k] = x;
  return out;
}

/** The `mediaType` field of a manifest's JSON, if any. */
function mediaTypeOf(bytes: Uint8Array): string | undefined {
  try {
    const doc: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof doc === "object" && doc !== null && "mediaType" in doc && typeof doc.mediaType === "string") return doc.mediaType;
  } catch {
    // not JSON
  }
  return undefined;
}
