// spec.sandboxRef {apiGroup, kind, name}: the form for sandbox platforms other than OpenSandbox's
// BatchSandbox (spec.sandboxName). A platform is one apiGroup/kind pair with its own resolution module;
// today that is kubernetes-sigs/agent-sandbox's Sandbox (./agent-sandbox.ts). The CRD's CEL rule on
// spec.sandboxRef lists the same pairs (checked by test/unit/crd.test.ts); this list is what the
// controller accepts when an old CRD or another writer let something else through.
import type { SandboxSnapshotSpec } from "../api/types.js";
import { AGENT_SANDBOX_GROUP, AGENT_SANDBOX_KIND } from "./agent-sandbox.js";

export type SandboxRef = NonNullable<SandboxSnapshotSpec["sandboxRef"]>;

export const SUPPORTED_SANDBOX_REFS: readonly { apiGroup: string; kind: string }[] = [
  { apiGroup: AGENT_SANDBOX_GROUP, kind: AGENT_SANDBOX_KIND },
];

/** Why spec.sandboxRef is not usable, naming the field; undefined when it is a supported pair. */
export function sandboxRefProblem(ref: SandboxRef): string | undefined {
  if (SUPPORTED_SANDBOX_REFS.some((s) => s.apiGroup === ref.apiGroup && s.kind === ref.kind)) return undefined;
  const supported = SUPPORTED_SANDBOX_REFS.map((s) => `apiGroup ${s.apiGroup} with kind ${s.kind}`).join("; ");
  return `spec.sandboxRef: apiGroup "${ref.apiGroup}" with kind "${ref.kind}" is not supported (supported: ${supported})`;
}
