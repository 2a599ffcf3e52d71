// Reliability: "no secrets leak". The whole path a credential travels — committer (push with a docker
// config, failures with a wrong password and with the registry down, unpause), the hook server (sync
// folding the committer's result into status, finalize deleting with the controller-wide credential,
// wrong credential, registry down) with Events — runs against a real token-auth registry and a real
// containerd, with recognisable secret values: passwords, their base64 `auth` forms, an identity token
// and every bearer token the token service issued. None may appear in any log line (debug level),
// stdout/stderr, result file, hook answer, status, Event object or error message.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SandboxSnapshotStatus, SyncResponse } from "../../src/api/types.js";
import { loadConfig } from "../../src/config/config.js";
import { createImageVerifier } from "../../src/server/image-verifier.js";
import { startServer, type RunningServer } from "../../src/server/app.js";
import { createCleanupRunner } from "../../src/server/cleanup-runner.js";
import { missingComponents } from "../support/components.js";
import { removeContainer, runContainer, startContainerd, taskStatus, type Containerd } from "../support/containerd.js";
import { job, jobPod, NS, pod, request, snapshot, t0, withStatus } from "../support/fixtures.js";
import { startRegistry, writeDockerConfig, type TestRegistry } from "../support/registry.js";
import { emptyKube } from "../support/fake-kube.js";

const missing = missingComponents(["containerd", "runc", "ctr", "docker-registry", "openssl", "tar"]);

const USER = "snapuser";
const PASSWORD = "S3CRET-ZEBRA-42";
const WRONG_PASSWORD = "S3CRET-WRONG-YAK-13";
const IDENTITY_TOKEN = "S3CRET-IDTOKEN-OKAPI-77";
const b64 = (s: string): string => Buffer.from(s).toString("base64");
const FIXED_SECRETS = [PASSWORD, WRONG_PASSWORD, IDENTITY_TOKEN, b64(`${USER}:${PASSWORD}`), b64(`${USER}:${WRONG_PASSWORD}`)];

const CLI = fileURLToPath(new URL("../../src/committer/cli.ts", import.meta.url));
const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  result: string;
}

describe.skipIf(missing)("reliability: no secret ever leaks (real registry with token auth, real containerd)", () => {
  let cd: Containerd;
  let reg: TestRegistry;
  let work: string;
  /** Everything observable: logs, outputs, answers, Events. */
  const seen: { where: string; text: string }[] = [];
  const record = (where: string, text: string): void => {
    seen.push({ where, text });
  };

  beforeAll(async () => {
    [cd, reg] = await Promise.all([
      startContainerd(),
      startRegistry({ token: { users: { [USER]: PASSWORD }, identityTokens: { [IDENTITY_TOKEN]: USER }, ttlSeconds: 300 }, logLevel: "debug" }),
    ]);
    work = mkdtempSync(join(tmpdir(), "reliability-secrets-"));
  });
  afterAll(async () => {
    await cd.stop();
    await reg.close();
    rmSync(work, { recursive: true, force: true });
  });

  const dockerConfig = (name: string, entry: Parameters<typeof writeDockerConfig>[2]): string =>
    writeDockerConfig(mkdtempSync(join(work, `${name}-`)), reg.host, entry);

  function runCli(args: string[], env: Record<string, string>): Promise<CliRun> {
    const resultPath = join(mkdtempSync(join(work, "run-")), "result.json");
    const e = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      CONTAINERD_SOCKET: cd.socket,
      CONTAINERD_ROOT: cd.root,
      SNAPSHOT_REGISTRY_INSECURE: "true",
      SNAPSHOT_SCRATCH_DIR: join(resultPath, ".."),
      SNAPSHOT_RESULT_PATH: resultPath,
      SNAPSHOT_UID: "7d3f0c2a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
      SNAPSHOT_NAME: "snap1",
      SNAPSHOT_NAMESPACE: NS,
      ...env,
    };
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: REPO_ROOT, env: e, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      child.on("error", reject);
      const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        let result = "";
        try {
          result = readFileSync(resultPath, "utf8");
        } catch {
          // none written
        }
        record(`committer ${args.join(" ")} stdout`, stdout);
        record(`committer ${args.join(" ")} stderr`, stderr);
        record(`committer ${args.join(" ")} result`, result);
        resolve({ code, stdout, stderr, result });
      });
    });
  }

  it("keeps every credential out of committer output, hook answers, status, Events and logs", async () => {
    const good = dockerConfig("good", { username: USER, password: PASSWORD, authOnly: true });
    const plain = dockerConfig("plain", { username: USER, password: PASSWORD });
    const wrong = dockerConfig("wrong", { username: USER, password: WRONG_PASSWORD });
    const identity = dockerConfig("identity", { identitytoken: IDENTITY_TOKEN });

    // ---- the hook server with the controller-wide clean-up credential, debug logs, Events captured
    const logs = new Capture();
    const events: Record<string, unknown>[] = [];
    const kube = emptyKube({
      createEvent: (_ns, ev) => {
        events.push(ev);
        return Promise.resolve("created");
      },
    });
    const start = async (cleanupConfig: string): Promise<{ server: RunningServer; url: string }> => {
      const config = loadConfig({
        HOOK_LISTEN_ADDRESS: "127.0.0.1:0",
        METRICS_LISTEN_ADDRESS: "127.0.0.1:0",
        SNAPSHOT_REGISTRY: `${reg.host}/snapshots`,
        SNAPSHOT_REGISTRY_INSECURE: "true",
        REGISTRY_CLEANUP_DOCKER_CONFIG: cleanupConfig,
        LOG_LEVEL: "debug",
      });
      const log = pino({ level: "debug" }, logs);
      const cleanup = await createCleanupRunner(config, { log, budgetMs: 3000 });
      const verifier = await createImageVerifier(config, { log });
      const server = await startServer(config, { log, kube, cleanup, verifier, clock: () => t0 });
      return { server, url: `http://127.0.0.1:${server.hookPort}` };
    };
    const call = async (url: string, hook: string, body: unknown): Promise<SyncResponse> => {
      const res = await fetch(`${url}/${hook}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
      const text = await res.text();
      record(`${hook} answer`, text);
      expect(res.status, text).toBe(200);
      return JSON.parse(text) as SyncResponse;
    };

    const id = await runContainer(cd, "sec", NS, "sandbox");
    const { server, url } = await start(good);
    try {
      // Pending → Committing: the controller names the image
      const pending = request(snapshot({ podName: "sec", deletionPolicy: "Delete" }), { pods: [pod("sec")] });
      const committing = await call(url, "sync", pending);
      expect(committing.status.phase).toBe("Committing");
      const imageUri = committing.status.containers?.[0]?.imageUri ?? "";
      expect(imageUri.startsWith(reg.host)).toBe(true);

      // the committer pushes with each credential form, and fails with a wrong one and with the registry down
      const ok = await runCli(["sec", NS, `sandbox:${imageUri}`], { DOCKER_CONFIG: good });
      expect(ok.code, ok.stderr).toBe(0);
      expect((await runCli(["sec", NS, `sandbox:${imageUri}-plain`], { DOCKER_CONFIG: plain })).code).toBe(0);
      expect((await runCli(["sec", NS, `sandbox:${imageUri}-id`], { DOCKER_CONFIG: identity })).code).toBe(0);
      const denied = await runCli(["sec", NS, `sandbox:${imageUri}-wrong`], { DOCKER_CONFIG: wrong });
      expect(denied.code).toBe(1);
      expect(denied.result).toMatch(/unauthori[sz]ed|401|credential/i);
      await reg.stop();
      const down = await runCli(["sec", NS, `sandbox:${imageUri}-down`], { DOCKER_CONFIG: good });
      await reg.start();
      expect(down.code).toBe(1);
      expect(await runCli(["unpause", "sec", NS, "sandbox"], { DOCKER_CONFIG: good })).toMatchObject({ code: 0 });
      expect(await taskStatus(cd, id)).toBe("RUNNING");

      // the commit Job's termination message folded into status (success), and a failed commit's message
      const commitJob = "snap1-commit";
      const withJob = (status: SandboxSnapshotStatus, state: "succeeded" | "failed", message: string): unknown =>
        withStatus(request(snapshot({ podName: "sec", deletionPolicy: "Delete" }), { pods: [pod("sec"), jobPod(commitJob, state === "succeeded" ? "Succeeded" : "Failed", message)], jobs: [job(commitJob, state)] }), status);
      const failed = await call(url, "sync", withJob(committing.status, "failed", denied.result));
      expect(failed.status.phase).toBe("Failed");
      const succeeded = await call(url, "sync", withJob(committing.status, "succeeded", ok.result));
      expect(succeeded.status.phase).toBe("Succeed");
      const digest = succeeded.status.containers?.[0]?.imageDigest ?? "";
      expect(digest).toMatch(/^sha256:/);

      // finalize: registry down (error in status), then deleted with the controller-wide credential
      const deleting = (status: SandboxSnapshotStatus): unknown => ({
        ...withStatus(request(snapshot({ podName: "sec", deletionPolicy: "Delete" }, { deleting: "2026-11-29T10:00:00Z" })), status),
        finalizing: true,
      });
      await reg.stop();
      const outage = await call(url, "finalize", deleting(succeeded.status));
      await reg.start();
      expect(outage.finalized).not.toBe(true);
      expect(outage.status.cleanup?.lastError ?? "").not.toBe("");
      const done = await call(url, "finalize", deleting({ ...succeeded.status }));
      expect(done.status.cleanup?.deletedDigests).toContain(digest);
      // finalized once the clean-up result is stored
      expect((await call(url, "finalize", deleting(done.status))).finalized).toBe(true);

      // the same with a wrong controller-wide credential: the error is recorded, never the password
      const other = await start(wrong);
      try {
        const refused = await call(other.url, "finalize", deleting({ ...succeeded.status, containers: [{ containerName: "sandbox", imageUri: `${imageUri}-plain` }] }));
        expect(refused.finalized).not.toBe(true);
        expect(refused.status.cleanup?.lastError ?? "").toMatch(/unauthori[sz]ed|401|credential|denied/i);
      } finally {
        await other.server.close();
      }
    } finally {
      await server.close();
      await removeContainer(cd, id);
    }
    // give the fire-and-forget Event calls a moment
    await new Promise((r) => setTimeout(r, 100));
    record("hook server logs", logs.text);
    for (const [i, ev] of events.entries()) record(`Event ${i}`, JSON.stringify(ev));
    record("registry log", reg.log());

    const issued = reg.issuer?.issuedTokens ?? [];
    expect(issued.length).toBeGreaterThan(0);
    const secrets = [...FIXED_SECRETS, ...issued];
    const leaks: string[] = [];
    for (const { where, text } of seen) {
      if (where === "registry log") continue; // the registry's own log is not ours; recorded for context only
      for (const s of secrets) if (text.includes(s)) leaks.push(`${where} contains ${s.slice(0, 12)}…`);
    }
    const bytes = seen.reduce((n, s) => n + s.text.length, 0);
    console.log(
      `[reliability] secrets: ${secrets.length} secret values (${issued.length} bearer tokens issued) searched in ${seen.length} outputs (${bytes} bytes: committer stdout/stderr/results, hook answers, ${events.length} Events, ${logs.text.split("\n").length} log lines); leaks: ${leaks.length}`,
    );
    expect(leaks).toEqual([]);
    // the outputs are not empty: errors and debug lines were really produced
    expect(logs.text).toMatch(/registry clean-up/);
    expect(events.length).toBeGreaterThan(0);
  }, 240_000);
});
