#!/usr/bin/env node
// image-committer: snapshots a pod's containers into images (OpenSandbox-compatible command line).
//
//   image-committer <pod> <namespace> <container>:<imageRef>...
//   image-committer unpause <pod> <namespace> <container>...
//
// Settings come from the environment (see ./config.ts). The result is one line of JSON (< 4 KiB) in
// SNAPSHOT_RESULT_PATH (default /dev/termination-log) and on stdout; logs go to stderr. Exit codes:
// 0 success, 1 failure, 2 usage error, 130/143 interrupted (SIGINT/SIGTERM, after resuming).
import { existsSync, realpathSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ContainerdClient } from "../containerd/client.js";
import { DEFAULT_RESULT_PATH, formatCommitterResult, type CommitterResult } from "../contract/commit-job.js";
import { commit, describeError, unpause, type CommitDeps } from "./commit.js";
import { parseInvocation, USAGE } from "./config.js";
import { thawAll } from "./freeze.js";

export { RESULT_LIMIT } from "../contract/commit-job.js";

export type Result = CommitterResult;

/** The result line (format and 4 KiB budget: src/contract/commit-job.ts). */
export function formatResult(r: Result): string {
  return formatCommitterResult(r);
}

export interface CliIo {
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
  /** Test hooks for the commit (freeze observation). */
  readonly hooks?: CommitDeps["hooks"];
}

function writeResult(path: string, r: Result, io: CliIo): void {
  const line = formatResult(r);
  try {
    // Outside Kubernetes the default termination-log path does not exist: stdout has the result.
    if (path === DEFAULT_RESULT_PATH && !existsSync(path)) {
      io.stdout(`${line}\n`);
      return;
    }
    writeFileSync(path, line);
  } catch (e) {
    io.stderr(`image-committer: cannot write the result to ${path} (SNAPSHOT_RESULT_PATH): ${describeError(e)}\n`);
  }
  io.stdout(`${line}\n`);
}

/** Runs the committer; resolves to the exit code. Never throws. */
export async function run(argv: readonly string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const parsed = parseInvocation(argv, env);
  if (!parsed.ok) {
    io.stderr(`image-committer: ${parsed.error.message}\n${parsed.error.message.includes("usage:") ? "" : `${USAGE}\n`}`);
    const path = env.SNAPSHOT_RESULT_PATH?.startsWith("/") === true ? env.SNAPSHOT_RESULT_PATH : DEFAULT_RESULT_PATH;
    writeResult(path, { error: parsed.error.message }, io);
    return 2;
  }
  const inv = parsed.value;
  const s = inv.settings;
  const log = {
    info: (m: string): void => {
      io.stderr(`image-committer: ${m}\n`);
    },
    warn: (m: string): void => {
      io.stderr(`image-committer: warning: ${m}\n`);
    },
  };
  const client = new ContainerdClient({ socket: s.containerdSocket, namespace: s.containerdNamespace });
  try {
    if (inv.mode === "unpause") {
      const r = await unpause(client, inv.pod, inv.namespace, inv.containers, s.snapshotUid ?? "");
      log.info(`unpause ${inv.namespace}/${inv.pod}: resumed [${r.resumed.join(", ")}], already running [${r.running.join(", ")}], not found [${r.missing.join(", ")}]`);
      for (const n of r.notOurs) log.warn(`left paused: ${n}`);
      writeResult(s.resultPath, { containers: [], freezeMillis: 0 }, io);
      return 0;
    }
    const out = await commit(inv.pod, inv.namespace, inv.targets, s, { client, log, ...(io.hooks ? { hooks: io.hooks } : {}) });
    writeResult(s.resultPath, { containers: out.containers, freezeMillis: out.freezeMillis }, io);
    return 0;
  } catch (e) {
    const msg = describeError(e);
    log.warn(`failed: ${msg}`);
    writeResult(s.resultPath, { error: msg }, io);
    return 1;
  } finally {
    // belt and braces: nothing of ours stays paused, whatever happened
    await thawAll();
    client.close();
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  const io: CliIo = {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
  };
  const resultPath = (): string => {
    const p = process.env.SNAPSHOT_RESULT_PATH;
    return p?.startsWith("/") === true ? p : DEFAULT_RESULT_PATH;
  };
  let stopping = false;
  const stop = (why: string, code: number): void => {
    if (stopping) return;
    stopping = true;
    io.stderr(`image-committer: ${why}: resuming any paused container before exiting\n`);
    void thawAll()
      .catch(() => undefined)
      .finally(() => {
        writeResult(resultPath(), { error: `interrupted (${why}); containers resumed` }, io);
        process.exit(code);
      });
  };
  process.on("SIGTERM", () => {
    stop("SIGTERM", 143);
  });
  process.on("SIGINT", () => {
    stop("SIGINT", 130);
  });
  const crash = (e: unknown): void => {
    stop(`internal error: ${describeError(e)}`, 1);
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
  // Whatever a connection's handles do (grpc-js, used before, left its connection unreferenced with a call
  // in flight), the event loop must not empty mid-call and Node exit with code 0 and no result. Stay alive until done.
  const keepAlive = setInterval(() => undefined, 60_000);
  void run(process.argv.slice(2), process.env, io).then((code) => {
    clearInterval(keepAlive);
    if (!stopping) process.exit(code);
  });
}
