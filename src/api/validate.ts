// Runtime validation of hook requests and responses against hooks/schema/hooks.generated.json,
// the same schema the TypeScript types are generated from.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormatsModule from "ajv-formats";
import type { CustomizeRequest, CustomizeResponse, Pod, SyncRequest, SyncResponse } from "./types.js";

const SCHEMA_ID = "https://sandbox.opensandbox.io/schemas/hooks.json";

function loadSchema(): object {
  // Both layouts: src/api (tsx, tests) and dist/api (compiled) sit two levels below the project root.
  const url = new URL("../../hooks/schema/hooks.generated.json", import.meta.url);
  return JSON.parse(readFileSync(url, "utf8")) as object;
}

const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;
const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, allowUnionTypes: true });
addFormats(ajv);
ajv.addSchema(loadSchema());

function validator<T>(definition: string): ValidateFunction<T> {
  const fn = ajv.getSchema<T>(`${SCHEMA_ID}#/definitions/${definition}`);
  if (!fn) throw new Error(`hook schema has no definition ${definition}`);
  return fn;
}

export interface ValidationIssue {
  /** JSON pointer into the body, e.g. `/parent/spec/podName`. */
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; errors: ValidationIssue[] };

function run<T>(fn: ValidateFunction<T>, body: unknown): Validated<T> {
  if (fn(body)) return { ok: true, value: body };
  return { ok: false, errors: (fn.errors ?? []).slice(0, 20).map(describe) };
}

function describe(e: ErrorObject): ValidationIssue {
  const extra =
    e.keyword === "additionalProperties"
      ? ` (${String((e.params as { additionalProperty?: unknown }).additionalProperty)})`
      : e.keyword === "enum"
        ? ` (${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).map(String).join(", ")})`
        : "";
  return { path: e.instancePath === "" ? "/" : e.instancePath, message: `${e.message ?? e.keyword}${extra}` };
}

const syncRequest = validator<SyncRequest>("SyncRequest");
const syncResponse = validator<SyncResponse>("SyncResponse");
const customizeRequest = validator<CustomizeRequest>("CustomizeRequest");
const customizeResponse = validator<CustomizeResponse>("CustomizeResponse");
const pod = validator<Pod>("Pod");

export const validateSyncRequest = (body: unknown): Validated<SyncRequest> => run(syncRequest, body);
export const validateSyncResponse = (body: unknown): Validated<SyncResponse> => run(syncResponse, body);
export const validateCustomizeRequest = (body: unknown): Validated<CustomizeRequest> => run(customizeRequest, body);
export const validateCustomizeResponse = (body: unknown): Validated<CustomizeResponse> => run(customizeResponse, body);

/**
 * Related objects are only KubeObjects in the request schema (the map holds Pods and BatchSandboxes);
 * the core reads related Pods' spec and status, so each related Pod is checked against the Pod schema
 * too. Issues carry the full path into the request body.
 */
export function relatedPodIssues(req: SyncRequest): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const esc = (k: string): string => k.replace(/~/g, "~0").replace(/\//g, "~1");
  for (const [typeKey, byName] of Object.entries(req.related ?? {})) {
    for (const [name, obj] of Object.entries(byName)) {
      if ((obj.kind ?? typeKey.split(".")[0]) !== "Pod") continue;
      const v = run(pod, obj);
      if (!v.ok) for (const e of v.errors) issues.push({ path: `/related/${esc(typeKey)}/${esc(name)}${e.path === "/" ? "" : e.path}`, message: e.message });
      if (issues.length >= 20) return issues;
    }
  }
  return issues;
}
