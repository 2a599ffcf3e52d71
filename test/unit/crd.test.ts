import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { SUPPORTED_SANDBOX_REFS } from "../../src/reconcile/sandbox-ref.js";

const root = fileURLToPath(new URL("../..", import.meta.url));

interface Schema {
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  "x-kubernetes-validations"?: { rule: string; message: string }[];
}
interface Crd {
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string; shortNames: string[] };
    versions: {
      name: string;
      subresources: { status: object };
      additionalPrinterColumns: { name: string; jsonPath: string }[];
      schema: { openAPIV3Schema: Schema };
    }[];
  };
}

const crd = parse(readFileSync(`${root}/crds/sandboxsnapshot.crd.yaml`, "utf8")) as Crd;
const version = crd.spec.versions[0];
if (!version) throw new Error("CRD has no version");
const schema = version.schema.openAPIV3Schema;

function undocumented(s: Schema, path: string): string[] {
  const out: string[] = [];
  if (path !== "" && path !== ".metadata" && (s.description ?? "").length < 10) out.push(path);
  for (const [k, v] of Object.entries(s.properties ?? {})) out.push(...undocumented(v, `${path}.${k}`));
  if (s.items) out.push(...undocumented(s.items, `${path}[]`));
  return out;
}

describe("SandboxSnapshot CRD", () => {
  it("is OpenSandbox-compatible: group, version, names, scope, status subresource", () => {
    expect(crd.spec.group).toBe("sandbox.opensandbox.io");
    expect(crd.spec.scope).toBe("Namespaced");
    expect(crd.spec.names).toMatchObject({ kind: "SandboxSnapshot", plural: "sandboxsnapshots", shortNames: ["sbxsnap"] });
    expect(version.name).toBe("v1alpha1");
    expect(version.subresources.status).toEqual({});
  });

  it("prints PHASE, SANDBOX and AGE", () => {
    const cols = Object.fromEntries(version.additionalPrinterColumns.map((c) => [c.name.toUpperCase(), c.jsonPath]));
    expect(cols).toMatchObject({ PHASE: ".status.phase", SANDBOX: ".spec.sandboxName", AGE: ".metadata.creationTimestamp" });
  });

  it("describes every field so kubectl explain teaches the API", () => {
    expect(undocumented(schema, "")).toEqual([]);
  });

  it("has CEL rules with messages naming the field: one source, immutable spec, name length", () => {
    const spec = schema.properties?.spec;
    const rules = [...(schema["x-kubernetes-validations"] ?? []), ...(spec?.["x-kubernetes-validations"] ?? [])];
    expect(rules.map((r) => r.rule)).toEqual(
      expect.arrayContaining([
        "size(self.metadata.name) <= 55",
        "(has(self.sandboxName) ? 1 : 0) + (has(self.podName) ? 1 : 0) + (has(self.sandboxRef) ? 1 : 0) == 1",
        "self == oldSelf",
      ]),
    );
    for (const r of rules) expect(r.message).toMatch(/metadata\.name|spec/);
  });

  it("accepts in spec.sandboxRef exactly the apiGroup/kind pairs the controller supports, all three fields required", () => {
    const ref = schema.properties?.spec?.properties?.sandboxRef as Schema & { required?: string[] };
    expect(ref.required?.sort()).toEqual(["apiGroup", "kind", "name"]);
    const rules = ref["x-kubernetes-validations"] ?? [];
    expect(rules).toHaveLength(1);
    const listed = /in \[(.*)\]$/.exec(rules[0]?.rule ?? "")?.[1] ?? "";
    const pairs = [...listed.matchAll(/'([^']+)'/g)].map((m) => m[1]);
    expect(pairs).toEqual(SUPPORTED_SANDBOX_REFS.map((p) => `${p.apiGroup}/${p.kind}`));
    expect(rules[0]?.message).toContain("spec.sandboxRef");
  });

  it("sets no default for deletionPolicy (the effective rule lives in the controller)", () => {
    expect(JSON.stringify(schema.properties?.spec)).not.toContain('"default"');
  });

  it("has exactly the status fields the other components rely on", () => {
    expect(Object.keys(schema.properties?.status?.properties ?? {}).sort()).toEqual(
      [
        "phase", "observedGeneration", "sourcePodName", "sourceNodeName", "containers", "conditions",
        "startTime", "completionTime", "freezeMillis", "deletionPolicy", "cleanup", "imageCheck",
        // issue 18: the source pod's UID and the commit Job's UID (status memory for unpause and case 9)
        "sourcePodUID", "commitJob",
      ].sort(),
    );
  });

  it("generated files are current", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", "scripts/generate.ts", "--check"], { cwd: root, encoding: "utf8", timeout: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
