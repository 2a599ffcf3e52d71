// The API types, generated from the schemas (see scripts/generate.ts), plus a few derived names.
export type {
  SyncRequest,
  SyncResponse,
  CustomizeRequest,
  CustomizeResponse,
  RelatedResourceRule,
  KubeObject,
  ObjectMeta,
  OwnerReference,
  Job,
  Pod,
  BatchSandbox,
  AgentSandbox,
  SandboxSnapshot,
  SandboxSnapshotSpec,
  SandboxSnapshotStatus,
  ContainerSnapshot,
  Condition,
  CleanupStatus,
} from "./types.generated.js";

import type { SandboxSnapshotStatus, SandboxSnapshotSpec } from "./types.generated.js";

export type Phase = NonNullable<SandboxSnapshotStatus["phase"]>;
export type DeletionPolicy = NonNullable<SandboxSnapshotSpec["deletionPolicy"]>;
