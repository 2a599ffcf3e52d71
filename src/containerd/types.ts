// The parts of containerd's API messages the committer reads (field names as in the .proto files;
// the client loads them with keepCase, 64-bit integers as numbers, enums as strings).

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface Descriptor {
  media_type: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export interface Timestamp {
  seconds: number;
  nanos: number;
}

export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: { name: string } | null;
  snapshotter: string;
  snapshot_key: string;
  created_at: Timestamp | null;
}

export type ProcessStatus = "UNKNOWN" | "CREATED" | "RUNNING" | "STOPPED" | "PAUSED" | "PAUSING";

export interface TaskProcess {
  container_id: string;
  id: string;
  pid: number;
  status: ProcessStatus;
}

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: string;
  labels: Record<string, string>;
}

export interface Image {
  name: string;
  labels: Record<string, string>;
  target: Descriptor;
}

export interface ContentInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

export interface Lease {
  id: string;
  created_at: Timestamp | null;
  labels: Record<string, string>;
}
