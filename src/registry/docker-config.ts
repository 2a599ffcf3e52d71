// Credentials from a docker config file (`$DOCKER_CONFIG/config.json`, or the `.dockerconfigjson`
// of a Kubernetes Secret, which has the same `auths` shape).
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";

export interface RegistryCredentials {
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** OAuth2 refresh token (`identitytoken`), exchanged at the token service with grant_type=refresh_token. */
  readonly identityToken?: string | undefined;
  /** A bearer token to send to the registry as is (`registrytoken`). */
  readonly registryToken?: string | undefined;
}

export interface DockerConfig {
  /** Entries keyed by normalised host (`host[:port]`). */
  readonly auths: ReadonlyMap<string, RegistryCredentials>;
  /** Hosts configured for a credential helper (credsStore/credHelpers), which we cannot run. */
  readonly helperHosts: ReadonlySet<string>;
  readonly credsStore: string | undefined;
}

export class DockerConfigError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`invalid docker config ${path}: ${reason}`);
    this.name = "DockerConfigError";
  }
}

const DOCKER_HUB_KEY = "index.docker.io";

/**
 * Normalises an `auths` key or a registry name to `host[:port]`: drops `https://`/`http://` and any
 * path (`/v1/`, `/v2/`), lowercases, and maps Docker Hub's aliases to one key.
 */
export function normalizeRegistryHost(key: string): string {
  let h = key.trim();
  h = h.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  const slash = h.indexOf("/");
  if (slash >= 0) h = h.slice(0, slash);
  h = h.toLowerCase();
  if (h === "docker.io" || h === "registry-1.docker.io" || h === "index.docker.io") return DOCKER_HUB_KEY;
  return h;
}

function asString(v: unknown, path: string, field: string): string | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new DockerConfigError(path, `${field} must be a string`);
  return v;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses the JSON text of a docker config. `path` only names the source in error messages. */
export function parseDockerConfig(text: string, path = "<docker config>"): DockerConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // The parser's message can quote the file's content (which holds secrets): never include it.
    throw new DockerConfigError(path, "not valid JSON");
  }
  if (!isRecord(doc)) throw new DockerConfigError(path, "top level must be a JSON object");
  const auths = new Map<string, RegistryCredentials>();
  const rawAuths = doc.auths ?? {};
  if (!isRecord(rawAuths)) throw new DockerConfigError(path, "auths must be an object keyed by registry host");
  for (const [key, entry] of Object.entries(rawAuths)) {
    const where = `auths[${JSON.stringify(key)}]`;
    if (!isRecord(entry)) throw new DockerConfigError(path, `${where} must be an object`);
    let username = asString(entry.username, path, `${where}.username`);
    let password = asString(entry.password, path, `${where}.password`);
    const auth = asString(entry.auth, path, `${where}.auth`);
    if (auth !== undefined) {
      const decoded = Buffer.from(auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon <= 0) throw new DockerConfigError(path, `${where}.auth must be base64 of "username:password"`);
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
    const identityToken = asString(entry.identitytoken, path, `${where}.identitytoken`);
    const registryToken = asString(entry.registrytoken, path, `${where}.registrytoken`);
    const host = normalizeRegistryHost(key);
    const creds: RegistryCredentials = { username, password, identityToken, registryToken };
    // An exact `host` key wins over `https://host/v1/` style duplicates.
    if (!auths.has(host) || key.trim().toLowerCase() === host) auths.set(host, creds);
  }
  const helperHosts = new Set<string>();
  if (isRecord(doc.credHelpers)) for (const k of Object.keys(doc.credHelpers)) helperHosts.add(normalizeRegistryHost(k));
  const credsStore = asString(doc.credsStore, path, "credsStore");
  return { auths, helperHosts, credsStore };
}

/**
 * Reads a docker config from a file, or from `config.json` inside a directory (the `$DOCKER_CONFIG`
 * form). A missing file means "no credentials" and yields undefined.
 */
export async function loadDockerConfig(pathOrDir: string): Promise<DockerConfig | undefined> {
  let file = pathOrDir;
  try {
    if ((await stat(pathOrDir)).isDirectory()) file = join(pathOrDir, "config.json");
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw new DockerConfigError(pathOrDir, `cannot be read (${errnoCode(e)})`);
  }
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw new DockerConfigError(file, `cannot be read (${errnoCode(e)})`);
  }
  return parseDockerConfig(text, file);
}

/** Credentials for a registry host, or undefined (anonymous). */
export function credentialsFor(config: DockerConfig | undefined, registry: string): RegistryCredentials | undefined {
  if (config === undefined) return undefined;
  return config.auths.get(normalizeRegistryHost(registry));
}

function isNotFound(e: unknown): boolean {
  return errnoCode(e) === "ENOENT" || errnoCode(e) === "ENOTDIR";
}

function errnoCode(e: unknown): string {
  if (typeof e === "object" && e !== null && "code" in e && typeof e.code === "string") return e.code;
  return "unknown error";
}
