// Result shapes of the committer benchmark (bench/committer.ts), stored in bench/results/committer.json.

export interface OursRun {
  /** Longest stall the heartbeats inside the pod's containers saw while the committer ran. */
  readonly feltFreezeMs: number;
  /** The committer's own freezeMillis (pause of the first container → resume of the last). */
  readonly reportedFreezeMs: number;
  /** Process start → exit (includes Node's start-up). */
  readonly endToEndMs: number;
  /** Peak RSS (VmHWM) of the committer process. */
  readonly peakRssBytes: number;
  /** Compressed snapshot layers, all containers. */
  readonly layerBytes: number;
  readonly exitCode: number | null;
  /** Set when the committer failed (the run's other figures are then NaN). */
  readonly error?: string;
}

export interface DiffServiceRun {
  /** Longest stall the heartbeats saw. */
  readonly feltFreezeMs: number;
  /** Pause of the first container → resume of the last, measured by the caller. */
  readonly pausedMs: number;
  readonly layerBytes: number;
}

export interface WorkloadRun {
  readonly id: string;
  readonly title: string;
  readonly containers: number;
  /** Apparent size of the changed regular files in the upper directories. */
  readonly changedBytes: number;
  readonly changedEntries: number;
  /** Uncompressed tar of the upper directories (GNU tar, as the committer reads them). */
  readonly tarBytes: number;
  readonly coldReadMs: number;
  readonly warmReadMs: number;
  /** Longest heartbeat stall in a quiet second before the commit (scheduling noise of the machine). */
  readonly idleStallMs: number;
  readonly ours: OursRun;
  /** Absent for workloads that skip it (too slow at their size). */
  readonly diffService?: DiffServiceRun;
  /** tar | gzip | push of the same upper directories (read + compress + upload), sequential per container. */
  readonly boundMs: number;
  readonly boundBlobBytes: number;
  /** Workloads that check the pushed snapshot's contents: the verdict. */
  readonly verified?: string;
}

export interface SecondSnapshot {
  readonly changedBytes: number;
  /** Compressed size of the new snapshot layer. */
  readonly newLayerBytes: number;
  /** Request-body bytes the registry received during the second commit. */
  readonly uploadedBytes: number;
  readonly requests: number;
  readonly overheadBytes: number;
  readonly overheadPct: number;
}

export interface CommitterResults {
  readonly quick: boolean;
  readonly scale: number;
  readonly memoryLimitBytes: number | undefined;
  readonly cachesDropped: boolean;
  readonly compression: "gzip";
  readonly nodeStartupMs: number;
  readonly runs: WorkloadRun[];
  readonly second: SecondSnapshot | undefined;
  readonly nerdctl: string;
  readonly loadavg: { before: number; after: number };
  /** Whether the bench, containerd (and so its shims and runc), the registry and the committer ran with nice -10. */
  readonly reniced: boolean;
}
