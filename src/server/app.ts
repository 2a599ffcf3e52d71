// The hook HTTP server (thin shell): validate, look up what the core planned, call the pure core,
// answer. Bad input is a 400 with the validation errors; nothing a client sends can crash it.
import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type NextFunction, type Request, type Response } from "express";
import { pino, type Logger } from "pino";
import type { SandboxSnapshot, SyncRequest, SyncResponse } from "../api/types.js";
import {
  relatedPodIssues,
  validateCustomizeRequest,
  validateCustomizeResponse,
  validateSyncRequest,
  validateSyncResponse,
  type ValidationIssue,
} from "../api/validate.js";
import type { ControllerConfig } from "../config/config.js";
import { annotatedPodName, customizeAgentSandboxLookup } from "../reconcile/agent-sandbox.js";
import { customize, customizeLookup, type AgentSandboxCustomize } from "../reconcile/customize.js";
import { decideFinalize, planFinalizeLookups, type FinalizeCleanup } from "../reconcile/finalize.js";
import { planImageChecks } from "../reconcile/image-check.js";
import type { Ignored } from "../reconcile/observe.js";
import { allocStatus } from "../reconcile/source.js";
import { decideSync, planSyncLookups, type Decided } from "../reconcile/sync.js";
import { eventObject, type SnapshotEvent } from "./events.js";
import type { ImageVerifier } from "./image-verifier.js";
import { describeKubeError, type KubeAccess } from "./kube.js";
import { performSyncLookups, plansLookups } from "./lookups.js";
import { createMetrics, type Metrics } from "./metrics.js";

/**
 * Carries out the registry clean-up a finalize call needs (src/server/cleanup-runner.ts); optional.
 * Must not throw: a failed clean-up is folded into status and retried later.
 */
export type CleanupRunner = (req: SyncRequest, now: Date, log: Logger, metrics: Metrics) => Promise<FinalizeCleanup | undefined>;

export interface ServerDeps {
  config: ControllerConfig;
  log: Logger;
  metrics: Metrics;
  kube?: KubeAccess | undefined;
  /** Where "now" comes from. Required so a test always decides the time its fixtures are judged by. */
  clock: () => Date;
  cleanup?: CleanupRunner;
  /** Reads the registry before a commit is recorded and for periodic checks; without it nothing reaches Succeed. */
  verifier?: ImageVerifier;
}

export const BODY_LIMIT = "4mb";

type Hook = "sync" | "finalize" | "customize";

class BadRequest extends Error {
  constructor(
    message: string,
    readonly errors: ValidationIssue[],
  ) {
    super(message);
  }
}

/** A sync or finalize body checked against the hook schema, related Pods included. */
function syncRequest(body: unknown, hook: "sync" | "finalize"): SyncRequest {
  const v = validateSyncRequest(body);
  if (!v.ok) throw new BadRequest(`${hook} request does not match the hook schema`, v.errors);
  const podIssues = relatedPodIssues(v.value);
  if (podIssues.length > 0) throw new BadRequest(`${hook} request: a related Pod does not match the Pod schema`, podIssues);
  return v.value;
}

function snapshotRef(snap: SandboxSnapshot): string {
  return `${snap.metadata.namespace ?? ""}/${snap.metadata.name ?? ""}`;
}

/** Remembers what was reported, so each ignored object is logged and counted once (bounded memory). */
class OnceSet {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  /** True the first time `key` is added. */
  add(key: string): boolean {
    if (this.seen.has(key)) return false;
    if (this.seen.size >= this.max) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    this.seen.add(key);
    return true;
  }
}

export function createHookApp(deps: ServerDeps): express.Express {
  const { config, metrics } = deps;
  const { clock } = deps;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  let ready = true;
  app.locals.setReady = (v: boolean): void => {
    ready = v;
  };

  const emit = (snap: SandboxSnapshot, ev: SnapshotEvent, log: Logger): void => {
    if (!deps.kube) return;
    deps.kube.createEvent(snap.metadata.namespace ?? "", eventObject(snap, ev, clock())).catch((err: unknown) => {
      metrics.eventFailures.inc();
      log.warn({ err: describeKubeError(err), reason: ev.reason }, "could not create Event");
    });
  };

  const reported = new OnceSet(10_000);
  const reportIgnored = (snap: SandboxSnapshot, ignored: readonly Ignored[], log: Logger): void => {
    for (const i of ignored) {
      if (!reported.add(`${snap.metadata.namespace ?? ""}/${i.kind}/${i.name}/${i.uid ?? ""}/${snap.metadata.uid ?? ""}`)) continue;
      metrics.ignoredObjects.inc({ kind: i.kind });
      log.warn({ snapshot: snapshotRef(snap), kind: i.kind, name: i.name, uid: i.uid, reason: i.reason }, "ignored an object that is not controlled by this snapshot's source or Job");
    }
  };

  /** The act step: metrics, logs and the Events the core decided on. */
  const act = (snap: SandboxSnapshot, decided: Decided, log: Logger): void => {
    const prev = snap.status;
    const next = decided.response.status;
    if (prev?.phase !== next.phase && next.phase !== undefined) {
      metrics.phaseTransitions.inc({ from: prev?.phase ?? "none", to: next.phase });
      log.info({ snapshot: snapshotRef(snap), from: prev?.phase ?? "none", to: next.phase }, "phase changed");
      if (next.phase === "Succeed") {
        if (next.freezeMillis !== undefined) metrics.freezeSeconds.observe(next.freezeMillis / 1000);
        for (const c of next.containers ?? []) if (c.sizeBytes !== undefined) metrics.snapshotSizeBytes.observe(c.sizeBytes);
      }
    }
    for (const ev of decided.events) emit(snap, ev, log);
    reportIgnored(snap, decided.ignored, log);
  };

  const checked = (res: SyncResponse): SyncResponse => {
    const v = validateSyncResponse(res);
    if (!v.ok) throw new Error(`internal error: response does not match the hook schema: ${JSON.stringify(v.errors)}`);
    return res;
  };

  const handlers: Record<Hook, (body: unknown, log: Logger) => Promise<unknown>> = {
    // gather (bounded look-ups the core planned) → decide (pure) → act (answer, Events, metrics).
    sync: async (body, log) => {
      const req = syncRequest(body, "sync");
      const plan = planSyncLookups(req, config);
      const now = clock();
      const lookups = plansLookups(plan) ? await performSyncLookups(plan, req.parent, deps.kube) : {};
      // The registry is the witness of a commit (src/reconcile/image-check.ts): read it before deciding,
      // from the commit pods the look-ups found.
      const imagePlan = deps.verifier ? planImageChecks(req, config, now, lookups) : undefined;
      const images = imagePlan && deps.verifier ? await deps.verifier(imagePlan, log) : undefined;
      const decided = decideSync(req, config, now, images ? { ...lookups, images } : lookups);
      const res = checked(decided.response);
      act(req.parent, decided, log);
      return res;
    },
    finalize: async (body, log) => {
      const req = syncRequest(body, "finalize");
      const now = clock();
      const plan = { source: false, pushSecret: undefined, ...planFinalizeLookups(req) };
      const [cleanup, lookups] = await Promise.all([
        deps.cleanup ? deps.cleanup(req, now, log, metrics) : Promise.resolve(undefined),
        plansLookups(plan) ? performSyncLookups(plan, req.parent, deps.kube) : Promise.resolve({}),
      ]);
      const decided = decideFinalize(req, config, now, cleanup, lookups);
      const res = checked(decided.response);
      act(req.parent, decided, log);
      if (res.finalized === true) log.info({ snapshot: snapshotRef(req.parent) }, "finalized");
      return res;
    },
    customize: async (body, log) => {
      const v = validateCustomizeRequest(body);
      if (!v.ok) throw new BadRequest("customize request does not match the hook schema", v.errors);
      const req = v.value;
      const sandbox = customizeLookup(req);
      let allocPods: string[] = [];
      if (sandbox !== undefined && deps.kube) {
        try {
          const bs = await deps.kube.getBatchSandbox(req.parent.metadata.namespace ?? "", sandbox);
          const alloc = allocStatus(bs);
          if (alloc.error !== undefined) log.warn({ snapshot: snapshotRef(req.parent) }, alloc.error);
          allocPods = alloc.pods;
        } catch (err) {
          log.warn({ snapshot: snapshotRef(req.parent), err: describeKubeError(err) }, "could not read BatchSandbox for customize");
        }
      }
      const agentSandbox: AgentSandboxCustomize = { version: config.agentSandboxVersion };
      const sbName = customizeAgentSandboxLookup(req.parent);
      if (sbName !== undefined && deps.kube) {
        try {
          const sb = await deps.kube.getAgentSandbox(req.parent.metadata.namespace ?? "", sbName, config.agentSandboxVersion);
          const annotated = annotatedPodName(sb);
          if (annotated !== undefined) agentSandbox.annotatedPod = annotated;
        } catch (err) {
          log.warn({ snapshot: snapshotRef(req.parent), err: describeKubeError(err) }, "could not read Sandbox for customize");
        }
      }
      const res = customize(req, allocPods, agentSandbox);
      const rv = validateCustomizeResponse(res);
      if (!rv.ok) throw new Error(`internal error: customize response invalid: ${JSON.stringify(rv.errors)}`);
      return res;
    },
  };

  app.use((req: Request, res: Response, next: NextFunction) => {
    const header = req.headers["x-request-id"];
    const id = typeof header === "string" && /^[\w.-]{1,64}$/.test(header) ? header : randomUUID();
    res.locals.log = deps.log.child({ reqId: id });
    res.setHeader("x-request-id", id);
    next();
  });

  app.get("/healthz", (_req, res) => {
    res.type("text/plain").send("ok");
  });
  app.get("/readyz", (_req, res) => {
    if (ready) res.type("text/plain").send("ok");
    else res.status(503).type("text/plain").send("shutting down");
  });

  for (const hook of ["sync", "finalize", "customize"] as const) {
    app.post(
      `/${hook}`,
      express.json({ limit: BODY_LIMIT, strict: true, type: () => true }),
      (req: Request, res: Response, next: NextFunction) => {
        const log = res.locals.log as Logger;
        const end = metrics.hookDuration.startTimer({ hook });
        handlers[hook](req.body, log).then(
          (answer) => {
            end();
            metrics.hookRequests.inc({ hook, outcome: "ok" });
            res.json(answer);
          },
          (err: unknown) => {
            end();
            next(Object.assign(err instanceof Error ? err : new Error(String(err)), { hook }));
          },
        );
      },
    );
  }

  app.use((_req: Request, res: Response) => {
    res.status(404).json({ error: "not found; hooks are POST /sync, /finalize, /customize" });
  });

  // Error handler: express needs the four-argument form.
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const log = (res.locals.log as Logger | undefined) ?? deps.log;
    const hook = ((err as { hook?: string }).hook ?? req.path.slice(1)) || "unknown";
    const e = err as { type?: string; status?: number; message?: string };
    if (err instanceof BadRequest) {
      metrics.hookRequests.inc({ hook, outcome: "invalid" });
      log.warn({ hook, errors: err.errors }, err.message);
      res.status(400).json({ error: err.message, errors: err.errors });
    } else if (e.type === "entity.parse.failed") {
      metrics.hookRequests.inc({ hook, outcome: "invalid" });
      log.warn({ hook }, "request body is not valid JSON");
      res.status(400).json({ error: "request body is not valid JSON", errors: [{ path: "/", message: e.message ?? "" }] });
    } else if (e.type === "entity.too.large") {
      metrics.hookRequests.inc({ hook, outcome: "invalid" });
      log.warn({ hook }, `request body is larger than ${BODY_LIMIT}`);
      res.status(413).json({ error: `request body is larger than ${BODY_LIMIT}` });
    } else if (typeof e.status === "number" && e.status >= 400 && e.status < 500) {
      metrics.hookRequests.inc({ hook, outcome: "invalid" });
      res.status(e.status).json({ error: e.message ?? "bad request" });
    } else {
      metrics.hookRequests.inc({ hook, outcome: "error" });
      log.error({ hook, err }, "hook failed");
      res.status(500).json({ error: "internal error" });
    }
  });
  return app;
}

export function createMetricsApp(metrics: Metrics): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.get("/metrics", (_req, res, next) => {
    metrics.registry.metrics().then((text) => {
      res.type(metrics.registry.contentType).send(text);
    }, next);
  });
  app.use((_req, res) => {
    res.status(404).type("text/plain").send("metrics are at /metrics");
  });
  return app;
}

export interface RunningServer {
  hookPort: number;
  metricsPort: number;
  metrics: Metrics;
  /** Stops accepting, finishes in-flight requests, then closes. */
  close(): Promise<void>;
}

function listen(app: express.Express, host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host);
    server.once("listening", () => {
      resolve(server);
    });
    server.once("error", reject);
  });
}

/** Lets in-flight requests finish; connections still open after the grace period are cut. */
function closeServer(server: Server, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
    }, graceMs);
    timer.unref();
    // Keep-alive connections become idle as their last request finishes: close them as they do.
    const sweep = setInterval(() => {
      server.closeIdleConnections();
    }, 50);
    server.close(() => {
      clearTimeout(timer);
      clearInterval(sweep);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export async function startServer(
  config: ControllerConfig,
  opts: { clock: () => Date; log?: Logger; kube?: KubeAccess | undefined; cleanup?: CleanupRunner; verifier?: ImageVerifier },
): Promise<RunningServer> {
  const log = opts.log ?? pino({ level: config.logLevel });
  const metrics = createMetrics();
  const hookApp = createHookApp({ config, log, metrics, kube: opts.kube, clock: opts.clock, ...(opts.cleanup ? { cleanup: opts.cleanup } : {}), ...(opts.verifier ? { verifier: opts.verifier } : {}) });
  const hookServer = await listen(hookApp, config.hookListen.host, config.hookListen.port);
  // Metacontroller keeps connections alive; a bit longer than its idle timeout avoids reset races.
  hookServer.keepAliveTimeout = 65_000;
  let metricsServer: Server;
  try {
    metricsServer = await listen(createMetricsApp(metrics), config.metricsListen.host, config.metricsListen.port);
  } catch (err) {
    await closeServer(hookServer);
    throw err;
  }
  const port = (s: Server): number => (s.address() as AddressInfo).port;
  return {
    hookPort: port(hookServer),
    metricsPort: port(metricsServer),
    metrics,
    close: async () => {
      (hookApp.locals.setReady as (v: boolean) => void)(false);
      await Promise.all([closeServer(hookServer), closeServer(metricsServer)]);
    },
  };
}
