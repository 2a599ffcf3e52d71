// Child process of the hook-server benchmark: serves either the real hook server (startServer from
// src/server/app.ts, no Kubernetes API, no registry clean-up) or the baseline — a trivial express JSON
// echo on the same body parser limit. Prints `{"port":N}` on stdout when listening; answers
// `{"cmd":"usage"}` IPC messages with its CPU time and memory, `{"cmd":"gc"}` with a collection first.
//
//   node --import tsx bench/hook-server-child.ts ours|echo
import type { AddressInfo } from "node:net";
import express from "express";
import { pino } from "pino";
import { startServer } from "../src/server/app.js";
import { benchConfig } from "./hook-payloads.js";

interface UsageReply {
  cpuUserMicros: number;
  cpuSystemMicros: number;
  rss: number;
  heapUsed: number;
}

function usage(): UsageReply {
  const c = process.cpuUsage();
  const m = process.memoryUsage();
  return { cpuUserMicros: c.user, cpuSystemMicros: c.system, rss: m.rss, heapUsed: m.heapUsed };
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  let port: number;
  if (mode === "ours") {
    const config = benchConfig({ HOOK_LISTEN_ADDRESS: "127.0.0.1:0", METRICS_LISTEN_ADDRESS: "127.0.0.1:0" });
    // Logs go where the Deployment sends them (stdout, here /dev/null), at the configured level.
    const log = pino({ level: config.logLevel, base: { component: "sandbox-snapshot-hooks" } });
    const server = await startServer(config, { log, clock: () => new Date() });
    port = server.hookPort;
  } else if (mode === "echo") {
    const app = express();
    app.disable("x-powered-by");
    app.set("etag", false);
    app.post("/sync", express.json({ limit: "4mb", strict: true, type: () => true }), (req, res) => {
      res.json(req.body);
    });
    port = await new Promise<number>((resolve, reject) => {
      const s = app.listen(0, "127.0.0.1");
      s.keepAliveTimeout = 65_000;
      s.once("listening", () => {
        resolve((s.address() as AddressInfo).port);
      });
      s.once("error", reject);
    });
  } else {
    process.stderr.write("usage: hook-server-child.ts ours|echo\n");
    process.exit(2);
  }
  process.on("message", (m: { cmd?: string }) => {
    if (m.cmd === "gc") {
      const g = (globalThis as { gc?: () => void }).gc;
      g?.();
    }
    process.send?.(usage());
  });
  // a clean exit, so that `--cpu-prof` writes its profile
  process.on("disconnect", () => process.exit(0));
  process.on("SIGTERM", () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`hook-server-child: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
