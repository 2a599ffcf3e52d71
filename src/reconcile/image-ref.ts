// Image references for a snapshot's containers (DESIGN.md "Compatibility facts"): the repository
// from SNAPSHOT_REPOSITORY_TEMPLATE, the tag from OpenSandbox's rules.
import { createHash } from "node:crypto";
import type { SandboxSnapshot } from "../api/types.js";
import { BATCH_SANDBOX_KIND, API_VERSION } from "./names.js";

const OSB_NAME = /^osb-snap-([0-9a-f]{32})$/;

/** The snapshot's controller owner when it is a BatchSandbox. */
export function batchSandboxOwner(snap: SandboxSnapshot): { name: string; uid: string } | undefined {
  const owner = snap.metadata.ownerReferences?.find((o) => o.controller === true);
  if (owner?.kind !== BATCH_SANDBOX_KIND || owner.apiVersion.split("/")[0] !== API_VERSION.split("/")[0]) return undefined;
  return { name: owner.name, uid: owner.uid };
}

/**
 * `snap-gen<generation>` for BatchSandbox-owned snapshots, `snap-<hex>` for names `osb-snap-<32 hex>`,
 * else `snap-` + the first 32 hex characters of sha256(name).
 */
export function snapshotTag(snap: SandboxSnapshot, ownerGeneration: number | undefined): string {
  if (batchSandboxOwner(snap) !== undefined && ownerGeneration !== undefined) return `snap-gen${ownerGeneration}`;
  const name = snap.metadata.name ?? "";
  const m = OSB_NAME.exec(name);
  if (m) return `snap-${m[1] ?? ""}`;
  return `snap-${createHash("sha256").update(name).digest("hex").slice(0, 32)}`;
}

// OCI distribution spec: repository path components and tags.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export type ImageRefResult = { ok: true; ref: string } | { ok: false; message: string };

export function imageReference(
  template: string,
  vars: { registry: string; namespace: string; source: string; container: string },
  tag: string,
): ImageRefResult {
  const repo = template.replace(/\{(registry|namespace|source|container)\}/g, (_, k: keyof typeof vars) => vars[k]);
  const [host, ...path] = repo.split("/");
  const bad = path.find((c) => !PATH_COMPONENT.test(c));
  if (host === undefined || path.length === 0 || bad !== undefined) {
    return {
      ok: false,
      message: `repository "${repo}" from SNAPSHOT_REPOSITORY_TEMPLATE is not a valid OCI repository name (component "${bad ?? ""}")`,
    };
  }
  if (repo.length > 255) return { ok: false, message: `repository "${repo}" is longer than 255 characters` };
  if (!TAG.test(tag)) return { ok: false, message: `tag "${tag}" is not a valid OCI tag` };
  return { ok: true, ref: `${repo}:${tag}` };
}
