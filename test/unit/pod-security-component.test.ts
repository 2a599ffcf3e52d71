// deploy/components/pod-security-baseline-audit: an operator's overlay that lists its sandbox
// namespaces and adds the component gets Pod Security baseline in warn and audit mode on exactly
// those namespaces, enforce left at privileged (so our commit pods are still admitted).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { missingComponents } from "../support/components.js";

const COMPONENT = fileURLToPath(new URL("../../deploy/components/pod-security-baseline-audit", import.meta.url));
const missing = missingComponents(["kubectl"]);

interface Namespace {
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
}

describe.skipIf(missing)("the pod-security-baseline-audit component", () => {
  const dir = mkdtempSync(join(tmpdir(), "psa-overlay-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(join(dir, "kustomization.yaml"), `resources: [namespaces.yaml]\ncomponents: [${relative(dir, COMPONENT)}]\n`);
  writeFileSync(
    join(dir, "namespaces.yaml"),
    [
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sandboxes\n  labels:\n    sandbox.opensandbox.io/sandbox-namespace: \"true\"\n",
      "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-apps\n  labels:\n    team: apps\n",
    ].join("---\n"),
  );
  const rendered = execFileSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  const namespaces = parseAllDocuments(rendered).map((d) => d.toJS() as Namespace);
  const labels = (name: string): Record<string, string> => namespaces.find((n) => n.metadata.name === name)?.metadata.labels ?? {};

  it("labels sandbox namespaces for baseline warnings and audit, enforce privileged", () => {
    expect(labels("sandboxes")).toEqual({
      "sandbox.opensandbox.io/sandbox-namespace": "true",
      "pod-security.kubernetes.io/enforce": "privileged",
      "pod-security.kubernetes.io/warn": "baseline",
      "pod-security.kubernetes.io/warn-version": "latest",
      "pod-security.kubernetes.io/audit": "baseline",
      "pod-security.kubernetes.io/audit-version": "latest",
    });
  });

  it("leaves other namespaces alone", () => {
    expect(labels("team-apps")).toEqual({ team: "apps" });
  });
});
