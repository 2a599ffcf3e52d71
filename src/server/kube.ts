// The hook server's few, time-bounded Kubernetes API calls: GET a BatchSandbox or an agent-sandbox
// Sandbox, GET a Pod, list pods by a label selector and Events of one object (both in bounded pages),
// check that a Secret exists, create an Event. Without in-cluster credentials or KUBECONFIG there is
// no API access; callers degrade (logged once at start-up).
import { existsSync } from "node:fs";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { AgentSandbox, BatchSandbox, Pod, SandboxSnapshot } from "../api/types.js";
import { AGENT_SANDBOX_GROUP, AGENT_SANDBOX_RESOURCE } from "../reconcile/agent-sandbox.js";
import { BATCH_SANDBOX_RESOURCE, GROUP, SNAPSHOT_RESOURCE } from "../reconcile/names.js";

export interface KubeAccess {
  /** undefined when the object does not exist. */
  getBatchSandbox(namespace: string, name: string): Promise<BatchSandbox | undefined>;
  /** An agent-sandbox Sandbox (agents.x-k8s.io/<version>); undefined when it does not exist. */
  getAgentSandbox(namespace: string, name: string, version: string): Promise<AgentSandbox | undefined>;
  getPod(namespace: string, name: string): Promise<Pod | undefined>;
  /** The SandboxSnapshot as stored (finalize re-reads it before deleting anything). */
  getSandboxSnapshot(namespace: string, name: string): Promise<SandboxSnapshot | undefined>;
  secretExists(namespace: string, name: string): Promise<boolean>;
  /** Pods matching a label selector: at most `pageSize` × `pages` of them (the first ones by name). */
  listPods(namespace: string, labelSelector: string, bound?: ListBound): Promise<Pod[]>;
  /** Events matching a field selector (e.g. involvedObject.uid=…), bounded the same way. */
  listEvents(namespace: string, fieldSelector: string, bound?: ListBound): Promise<KubeEvent[]>;
  createEvent(namespace: string, event: Record<string, unknown>): Promise<"created" | "exists">;
}

export const KUBE_TIMEOUT_MS = 2000;

/** How much one list look-up may read: pages of pageSize objects, at most `pages` of them. */
export interface ListBound {
  pageSize: number;
  pages: number;
}
export const DEFAULT_LIST_BOUND: ListBound = { pageSize: 50, pages: 4 };

/** The fields of a core/v1 Event the hooks read. */
export interface KubeEvent {
  type?: string;
  reason?: string;
  message?: string;
  lastTimestamp?: string | Date;
  eventTime?: string | Date;
  metadata?: { creationTimestamp?: string | Date };
}

export class KubeTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
    this.name = "KubeTimeoutError";
  }
}

function statusCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } } | null;
  const c = e?.code ?? e?.statusCode ?? e?.response?.statusCode;
  return typeof c === "number" ? c : undefined;
}

async function bounded<T>(what: string, ms: number, call: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new KubeTimeoutError(what, ms));
    }, ms);
  });
  try {
    return await Promise.race([call(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Short, credential-free description of an API error for status conditions and logs. */
export function describeKubeError(err: unknown): string {
  if (err instanceof KubeTimeoutError) return err.message;
  const code = statusCode(err);
  if (code !== undefined) return `API server answered HTTP ${code}`;
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0]?.slice(0, 200) ?? "unknown error";
}

async function orUndefinedOn404<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    if (statusCode(err) === 404) return undefined;
    throw err;
  }
}

/** Reads pages until the list ends or the bound is reached; never more than pageSize × pages items. */
export async function paged<T>(bound: ListBound, page: (limit: number, cont: string | undefined) => Promise<{ items: T[]; cont: string | undefined }>): Promise<T[]> {
  const out: T[] = [];
  let cont: string | undefined;
  for (let i = 0; i < bound.pages; i++) {
    const p = await page(bound.pageSize, cont);
    out.push(...p.items.slice(0, bound.pageSize));
    cont = p.cont;
    if (cont === undefined || cont === "") break;
  }
  return out;
}

/** Loads in-cluster credentials or KUBECONFIG; undefined when neither is available. */
export function loadKubeConfig(env: Readonly<Record<string, string | undefined>>): KubeConfig | undefined {
  const kc = new KubeConfig();
  if (env.KUBERNETES_SERVICE_HOST !== undefined && existsSync("/var/run/secrets/kubernetes.io/serviceaccount/token")) {
    kc.loadFromCluster();
    return kc;
  }
  const file = env.KUBECONFIG;
  if (file !== undefined && file !== "") {
    kc.loadFromFile(file.split(":")[0] ?? file);
    return kc;
  }
  return undefined;
}

export function createKubeAccess(kc: KubeConfig, timeoutMs = KUBE_TIMEOUT_MS): KubeAccess {
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  return {
    getBatchSandbox: (namespace, name) =>
      bounded(`GET BatchSandbox ${namespace}/${name}`, timeoutMs, () =>
        orUndefinedOn404(
          async () =>
            (await custom.getNamespacedCustomObject({
              group: GROUP,
              version: "v1alpha1",
              namespace,
              plural: BATCH_SANDBOX_RESOURCE,
              name,
            })) as BatchSandbox,
        ),
      ),
    getAgentSandbox: (namespace, name, version) =>
      bounded(`GET Sandbox ${namespace}/${name}`, timeoutMs, () =>
        orUndefinedOn404(
          async () =>
            (await custom.getNamespacedCustomObject({
              group: AGENT_SANDBOX_GROUP,
              version,
              namespace,
              plural: AGENT_SANDBOX_RESOURCE,
              name,
            })) as AgentSandbox,
        ),
      ),
    getSandboxSnapshot: (namespace, name) =>
      bounded(`GET SandboxSnapshot ${namespace}/${name}`, timeoutMs, () =>
        orUndefinedOn404(
          async () =>
            (await custom.getNamespacedCustomObject({ group: GROUP, version: "v1alpha1", namespace, plural: SNAPSHOT_RESOURCE, name })) as SandboxSnapshot,
        ),
      ),
    getPod: (namespace, name) =>
      bounded(`GET Pod ${namespace}/${name}`, timeoutMs, () =>
        orUndefinedOn404(async () => (await core.readNamespacedPod({ namespace, name })) as unknown as Pod),
      ),
    secretExists: (namespace, name) =>
      bounded(`GET Secret ${namespace}/${name}`, timeoutMs, async () => {
        // Only existence matters; the data is dropped at once and never logged.
        const found = await orUndefinedOn404(async () => {
          await core.readNamespacedSecret({ namespace, name });
          return true;
        });
        return found === true;
      }),
    listPods: (namespace, labelSelector, bound = DEFAULT_LIST_BOUND) =>
      bounded(`list Pods in ${namespace} (${labelSelector})`, timeoutMs, () =>
        paged(bound, async (limit, cont) => {
          const page = await core.listNamespacedPod({ namespace, labelSelector, limit, ...(cont !== undefined ? { _continue: cont } : {}) });
          return { items: page.items as unknown as Pod[], cont: page.metadata?._continue };
        }),
      ),
    listEvents: (namespace, fieldSelector, bound = DEFAULT_LIST_BOUND) =>
      bounded(`list Events in ${namespace} (${fieldSelector})`, timeoutMs, () =>
        paged(bound, async (limit, cont) => {
          const page = await core.listNamespacedEvent({ namespace, fieldSelector, limit, ...(cont !== undefined ? { _continue: cont } : {}) });
          return { items: page.items as unknown as KubeEvent[], cont: page.metadata?._continue };
        }),
      ),
    createEvent: (namespace, event) =>
      bounded(`create Event in ${namespace}`, timeoutMs, async () => {
        try {
          await core.createNamespacedEvent({ namespace, body: event as never });
          return "created";
        } catch (err) {
          if (statusCode(err) === 409) return "exists";
          throw err;
        }
      }),
  };
}
