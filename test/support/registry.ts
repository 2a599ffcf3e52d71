// The real registry (Debian's docker-registry, distribution 2.8) on a free loopback port, in a temp
// directory, with deletion enabled by default and optional htpasswd or token auth. Stopped and
// removed on every exit path: `close()`, and a process `exit` hook for anything left running.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { RegistryClient, RegistryError, type RegistryClientOptions } from "../../src/registry/index.js";
import { STARTUP_BUDGET_MS } from "./budgets.js";
import { startTokenIssuer, type TokenIssuer, type TokenIssuerOptions } from "./registry-token-issuer.js";
import { which } from "./components.js";

export const REGISTRY_BINARY = "docker-registry";

export interface StartRegistryOptions {
  /** `storage.delete.enabled` (default true). False makes manifest DELETE answer 405. */
  readonly deletion?: boolean;
  /** htpasswd auth with these users (username → password), bcrypt-hashed with `htpasswd -B`. */
  readonly htpasswd?: Readonly<Record<string, string>>;
  /** Token auth served by a token issuer started for this registry. */
  readonly token?: TokenIssuerOptions;
  /** Registry log level (default "warn"); the log is in `<dir>/registry.log`. */
  readonly logLevel?: "debug" | "info" | "warn" | "error";
  /** Listen on this `host:port` instead of a free port on 127.0.0.1 (the test node's bridge address). */
  readonly address?: string;
}

export interface TestRegistry {
  /** `127.0.0.1:<port>` — the registry host for image references and RegistryClient. */
  readonly url: string;
  /** Same as `url`. */
  readonly host: string;
  /** `http://127.0.0.1:<port>` */
  readonly httpUrl: string;
  /** Temp directory holding config, storage, auth files and the log. */
  readonly dir: string;
  /** Storage root (`storage.filesystem.rootdirectory`). */
  readonly dataDir: string;
  /** The token issuer when started with `token`. */
  readonly issuer: TokenIssuer | undefined;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Starts the registry process again (same port, config and data) after `stop()`. */
  start(): Promise<void>;
  /** Stops the registry process (SIGTERM, then SIGKILL after 5 s); data stays. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** Stops everything and removes the temp directory. Idempotent. */
  close(): Promise<void>;
  /** A plain-HTTP client for this registry; options override the defaults (fast retries). */
  client(options?: Partial<RegistryClientOptions>): RegistryClient;
  /** The registry's log so far (for failure messages). */
  log(): string;
}

interface Live {
  proc: ChildProcess | undefined;
  dir: string;
}
const live = new Set<Live>();
let exitHookInstalled = false;

/** Kills every registry still running (by pid) and removes its temp directory; synchronous. */
function cleanupAll(): void {
  for (const l of live) {
    try {
      if (l.proc?.pid !== undefined && l.proc.exitCode === null && l.proc.signalCode === null) process.kill(l.proc.pid, "SIGKILL");
    } catch {
      // already gone
    }
    rmSync(l.dir, { recursive: true, force: true });
  }
  live.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", cleanupAll);
  // On SIGINT/SIGTERM Node exits without an "exit" event. Only when nobody else handles the signal
  // (so the default "terminate" behaviour is ours to keep): clean up, then exit as the signal would.
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    if (process.listenerCount(sig) === 0) {
      process.once(sig, () => {
        cleanupAll();
        process.exit(128 + num);
      });
    }
  }
}

/** A free TCP port on 127.0.0.1 (bound and released; the registry binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr !== null ? addr.port : 0;
      srv.close(() => {
        resolve(port);
      });
    });
  });
}

/** bcrypt htpasswd lines from apache2-utils' `htpasswd -niB` (password on stdin, not argv). */
export function htpasswdLines(users: Readonly<Record<string, string>>): string {
  const bin = which("htpasswd");
  if (bin === undefined) throw new Error("htpasswd not found (apt-get install apache2-utils; test/env/install-components.sh does it)");
  return Object.entries(users)
    .map(([u, p]) => execFileSync(bin, ["-niB", u], { input: `${p}\n`, encoding: "utf8" }).trim())
    .join("\n")
    .concat("\n");
}

async function waitReady(httpUrl: string, proc: ChildProcess, logPath: string): Promise<void> {
  const until = Date.now() + STARTUP_BUDGET_MS;
  while (Date.now() < until) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`docker-registry exited (${proc.exitCode ?? proc.signalCode ?? "?"}) during start-up:\n${tail(logPath)}`);
    }
    try {
      const res = await fetch(`${httpUrl}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${httpUrl} within ${STARTUP_BUDGET_MS / 1000} s:\n${tail(logPath)}`);
}

function tail(path: string): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-30).join("\n");
  } catch {
    return "(no log)";
  }
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  const bin = which(REGISTRY_BINARY);
  if (bin === undefined) throw new Error(`${REGISTRY_BINARY} not found; use missingComponents(["${REGISTRY_BINARY}"]) to skip`);
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), "test-registry-"));
  const entry: Live = { proc: undefined, dir };
  live.add(entry);
  let issuer: TokenIssuer | undefined;
  try {
    const host = opts.address ?? `127.0.0.1:${String(await freePort())}`;
    const httpUrl = `http://${host}`;
    const dataDir = join(dir, "data");
    const logPath = join(dir, "registry.log");
    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: opts.logLevel ?? "warn", accesslog: { disabled: true }, formatter: "text" },
      storage: {
        filesystem: { rootdirectory: dataDir },
        delete: { enabled: opts.deletion !== false },
        maintenance: { uploadpurging: { enabled: false } },
      },
      // A fixed secret keeps upload sessions valid across a stop/start (outage tests).
      http: { addr: host, secret: randomBytes(16).toString("hex") },
    };
    if (opts.htpasswd !== undefined && opts.token !== undefined) throw new Error("choose htpasswd or token auth, not both");
    if (opts.htpasswd !== undefined) {
      const path = join(dir, "htpasswd");
      writeFileSync(path, htpasswdLines(opts.htpasswd), { mode: 0o600 });
      config.auth = { htpasswd: { realm: "test-registry", path } };
    }
    if (opts.token !== undefined) {
      issuer = await startTokenIssuer(dir, opts.token);
      config.auth = { token: { realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootcertbundle: issuer.certPath } };
    }
    const configPath = join(dir, "config.yml");
    writeFileSync(configPath, stringify(config));

    const reg: TestRegistry & { proc: ChildProcess | undefined } = {
      url: host,
      host,
      httpUrl,
      dir,
      dataDir,
      issuer,
      proc: undefined,
      get pid() {
        return this.proc?.pid;
      },
      get running() {
        return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
      },
      async start() {
        if (this.running) return;
        const fd = openSync(logPath, "a");
        try {
          const proc = spawn(bin, ["serve", configPath], { stdio: ["ignore", fd, fd], detached: false });
          this.proc = proc;
          entry.proc = proc;
        } finally {
          closeSync(fd);
        }
        await waitReady(httpUrl, this.proc, logPath);
      },
      async stop() {
        const proc = this.proc;
        if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise<void>((resolve) => proc.once("exit", () => {
          resolve();
        }));
        proc.kill("SIGTERM");
        const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      },
      async restart() {
        await this.stop();
        await this.start();
      },
      async close() {
        await this.stop();
        await issuer?.close();
        rmSync(dir, { recursive: true, force: true });
        live.delete(entry);
      },
      client(options: Partial<RegistryClientOptions> = {}) {
        return new RegistryClient({
          registry: host,
          insecure: true,
          timeoutMs: 10_000,
          retry: { maxAttempts: 4, initialDelayMs: 50, maxDelayMs: 500 },
          ...options,
        });
      },
      log() {
        return tail(logPath);
      },
    };
    await reg.start();
    return reg;
  } catch (e) {
    const proc = entry.proc;
    if (proc?.pid !== undefined && proc.exitCode === null) proc.kill("SIGKILL");
    await issuer?.close();
    rmSync(dir, { recursive: true, force: true });
    live.delete(entry);
    throw e;
  }
}

/** Writes a docker config (`<dir>/config.json`) for `registry` and returns the directory (`$DOCKER_CONFIG`). */
export function writeDockerConfig(dir: string, registry: string, entry: { username?: string; password?: string; identitytoken?: string; authOnly?: boolean }): string {
  const auths: Record<string, Record<string, string>> = {};
  const e: Record<string, string> = {};
  if (entry.username !== undefined && entry.password !== undefined) {
    if (entry.authOnly === true) e.auth = Buffer.from(`${entry.username}:${entry.password}`).toString("base64");
    else {
      e.username = entry.username;
      e.password = entry.password;
    }
  }
  if (entry.identitytoken !== undefined) e.identitytoken = entry.identitytoken;
  auths[registry] = e;
  writeFileSync(join(dir, "config.json"), JSON.stringify({ auths }), { mode: 0o600 });
  return dir;
}

/** The RegistryError a call fails with; fails the test when it succeeds or throws anything else. */
export async function rejection(p: Promise<unknown>): Promise<RegistryError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof RegistryError) return e;
    throw e;
  }
  throw new Error("expected a RegistryError, the call succeeded");
}
