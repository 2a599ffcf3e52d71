// Image references: `[registry[:port]/]path/name[:tag][@algorithm:hex]`, following the grammar of
// the distribution project's reference package (the one every container tool accepts).

export interface ImageReference {
  /** Registry host with an optional port, e.g. `registry.example.com:5000`; `docker.io` when omitted. */
  readonly registry: string;
  /** Repository path inside the registry, e.g. `snapshots/sandbox-a-main`. */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
}

/** Keeps messages short whatever the input: an argument or a status field may be megabytes long. */
function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}… (${s.length} characters)` : s;
}

export class ReferenceError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`invalid image reference ${JSON.stringify(clip(input, 200))}: ${clip(reason, 300)}`);
    this.name = "ReferenceError";
  }
}

export const DEFAULT_REGISTRY = "docker.io";

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$/;
const MAX_REPOSITORY_LENGTH = 255;

/** Whether a string is a valid digest (`sha256:` followed by 64 lowercase hex characters, or another algorithm). */
export function isDigest(s: string): boolean {
  if (s.startsWith("sha256:")) return SHA256.test(s);
  return DIGEST.test(s);
}

export function isValidTag(s: string): boolean {
  return TAG.test(s);
}

export function isValidRepository(s: string): boolean {
  return s.length > 0 && s.length <= MAX_REPOSITORY_LENGTH && s.split("/").every((c) => PATH_COMPONENT.test(c));
}

export function isValidRegistryHost(s: string): boolean {
  return HOST.test(s);
}

/**
 * Parses `host:port/path/name:tag@sha256:…`. The first path component is the registry when it
 * contains a `.` or a `:`, or is `localhost`, as in every container tool; otherwise the registry is
 * `docker.io` (and a single-component name gets Docker Hub's `library/` prefix).
 */
export function parseImageReference(input: string): ImageReference {
  if (input.length === 0) throw new ReferenceError(input, "empty");
  if (input !== input.trim()) throw new ReferenceError(input, "surrounding whitespace");

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw new ReferenceError(input, `digest ${JSON.stringify(digest)} is not of the form sha256:<64 hex>`);
  }

  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new ReferenceError(input, `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }

  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("[")) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (!isValidRegistryHost(registry)) throw new ReferenceError(input, `registry host ${JSON.stringify(registry)} is not host[:port]`);
  if (registry === DEFAULT_REGISTRY && !repository.includes("/")) repository = `library/${repository}`;
  if (!isValidRepository(repository)) {
    throw new ReferenceError(
      input,
      `repository ${JSON.stringify(repository)} must be lowercase path components [a-z0-9] separated by . _ __ - and /, at most ${MAX_REPOSITORY_LENGTH} characters`,
    );
  }
  return { registry, repository, tag, digest };
}

/** The reference used in `/v2/<name>/manifests/<reference>`: the digest when present, else the tag, else `latest`. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

/** Formats a reference back to its canonical string (`registry/repository[:tag][@digest]`). */
export function formatImageReference(ref: ImageReference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}
