// An HTTP proxy on 127.0.0.1 in front of the test registry that can hold requests: before forwarding
// them (the client waits mid-push) or after the registry answered (the registry has the manifest, the
// client does not know yet). Tests use it to stop a committer at a known step of its push.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface HoldRule {
  readonly method: string;
  readonly path: RegExp;
  /** Hold the request this long before forwarding it. */
  readonly beforeMs?: number;
  /** Hold the registry's answer this long before passing it on. */
  readonly afterMs?: number;
}

export interface DelayProxy {
  /** `127.0.0.1:<port>` */
  readonly host: string;
  rules: HoldRule[];
  /** Requests seen (method and path), in order; `done` once the registry answered. */
  readonly log: { method: string; path: string; done: boolean; status?: number }[];
  /** Resolves when a request matching `method` and `path` arrives (or, with `answered`, has its answer). */
  when(method: string, path: RegExp, answered?: boolean, timeoutMs?: number): Promise<void>;
  reset(): void;
  close(): Promise<void>;
}

export async function startDelayProxy(upstream: string): Promise<DelayProxy> {
  const [uhost, uport] = upstream.split(":");
  const waiters: { method: string; path: RegExp; answered: boolean; resolve: () => void }[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((r) => {
      const t = setTimeout(() => {
        timers.delete(t);
        r();
      }, ms);
      timers.add(t);
    });
  const notify = (method: string, path: string, answered: boolean): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w !== undefined && w.method === method && w.path.test(path) && w.answered === answered) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
  };
  const proxy: DelayProxy & { server?: Server } = {
    host: "",
    rules: [],
    log: [],
    when(method, path, answered = false, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          reject(new Error(`proxy: no ${method} ${String(path)}${answered ? " answered" : ""} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push({
          method,
          path,
          answered,
          resolve: () => {
            clearTimeout(t);
            resolve();
          },
        });
      });
    },
    reset() {
      this.rules = [];
      this.log.length = 0;
      waiters.length = 0;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      const s = this.server;
      if (s === undefined) return;
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => {
        r();
      }));
    },
  };
  const server = createServer((req: IncomingMessage, res) => {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const entry: { method: string; path: string; done: boolean; status?: number } = { method, path, done: false };
    proxy.log.push(entry);
    const rule = proxy.rules.find((r) => r.method === method && r.path.test(path));
    // buffer the body (test images are small) so a held request is complete when forwarded
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", () => undefined);
    req.on("end", () => {
      notify(method, path, false);
      void (async () => {
        if (rule?.beforeMs !== undefined) await sleep(rule.beforeMs);
        const up = httpRequest(
          { host: uhost, port: Number(uport), method, path, headers: req.headers },
          (ures) => {
            const body: Buffer[] = [];
            ures.on("data", (c: Buffer) => body.push(c));
            ures.on("end", () => {
              entry.done = true;
              entry.status = ures.statusCode;
              notify(method, path, true);
              void (async () => {
                if (rule?.afterMs !== undefined) await sleep(rule.afterMs);
                const headers = { ...ures.headers };
                // Location headers name the registry: point them back at the proxy
                if (typeof headers.location === "string") headers.location = headers.location.replace(`//${upstream}`, `//${proxy.host}`);
                if (!res.destroyed) {
                  res.writeHead(ures.statusCode ?? 502, headers);
                  res.end(Buffer.concat(body));
                }
              })();
            });
          },
        );
        up.on("error", () => {
          if (!res.headersSent && !res.destroyed) res.writeHead(502).end();
        });
        up.end(Buffer.concat(chunks));
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => {
    r();
  }));
  proxy.server = server;
  (proxy as { host: string }).host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}
