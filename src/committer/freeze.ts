// Pausing a set of containers together, and making sure they are resumed: by the caller, by the
// watchdog when a freeze outlasts its maximum, or by a signal handler (see `thawAll`). A freezer
// owns its freeze (./ownership.ts): it takes the containers' freeze records before pausing, never
// pauses or resumes a container someone else paused, and checks before resuming that the freeze
// held (nobody resumed a container during it); otherwise the capture is torn and the thaw says so.
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdError } from "../containerd/client.js";
import { GrpcStatus } from "../containerd/grpc.js";
import { FreezeOwnership, NOT_A_COMMIT, PausedByOther, RECORD_MARGIN_MS } from "./ownership.js";

export interface FreezeLog {
  (msg: string): void;
}

/** Every freezer that may hold paused containers, for signal handlers. */
const active = new Set<Freezer>();

export class WatchdogExpired extends Error {
  constructor(readonly maxSeconds: number) {
    super(
      `the freeze exceeded SNAPSHOT_MAX_FREEZE_SECONDS=${maxSeconds}: the watchdog resumed the containers and the capture was abandoned`,
    );
    this.name = "WatchdogExpired";
  }
}

/** The freeze did not hold: a container was resumed (or its record taken) by someone else meanwhile. */
export class FreezeBroken extends Error {
  constructor(details: string[]) {
    super(`the freeze was broken, so the capture may be torn and is discarded: ${details.join("; ")}`);
    this.name = "FreezeBroken";
  }
}

export interface FreezerOptions {
  /** The snapshot UID recorded as the freeze's owner ("" or absent when none). */
  readonly owner?: string | undefined;
  /** Container id → Kubernetes container name, for messages. */
  readonly names?: ReadonlyMap<string, string>;
  /** How long to wait for another commit's freeze of these containers (default: max freeze + margin). */
  readonly waitMs?: number;
  /** Wall clock, epoch ms (freeze records are compared across processes). */
  readonly now?: () => number;
}

type FreezerClient = Pick<ContainerdClient, "pause" | "resume" | "taskStatus" | "createLease" | "deleteLease" | "listLeases">;

/** Pause errors after which the pause may have happened anyway: the container counts as ours. */
const UNCERTAIN = new Set<number>([GrpcStatus.DEADLINE_EXCEEDED, GrpcStatus.UNAVAILABLE, GrpcStatus.CANCELLED]);

export class Freezer {
  private paused: string[] = [];
  /** Containers found paused by someone else at our pause: never resumed by us. */
  private readonly foreign = new Set<string>();
  private readonly ownership: FreezeOwnership;
  private startedAt: number | undefined;
  private endedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private thawing: Promise<void> | undefined;
  /** The pause calls in flight: a thaw waits for them, or a late pause would outlive the resume. */
  private pausing: Promise<unknown> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly client: FreezerClient,
    private readonly ids: readonly string[],
    private readonly maxFreezeMs: number,
    private readonly log: FreezeLog = () => undefined,
    private readonly opts: FreezerOptions = {},
  ) {
    const lifetimeMs = maxFreezeMs + RECORD_MARGIN_MS;
    this.ownership = new FreezeOwnership(client, opts.owner ?? "", {
      lifetimeMs,
      waitMs: opts.waitMs ?? lifetimeMs,
      log,
      ...(opts.now !== undefined ? { now: opts.now } : {}),
      ...(opts.names !== undefined ? { names: opts.names } : {}),
    });
  }

  private name(id: string): string {
    return this.opts.names?.get(id) ?? id;
  }

  /** Aborted when the watchdog fires: the capture must stop. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Milliseconds the containers were (or have been) frozen. */
  get freezeMillis(): number {
    if (this.startedAt === undefined) return 0;
    return Math.round((this.endedAt ?? performance.now()) - this.startedAt);
  }

  /**
   * Takes the containers' freeze records (waiting, bounded, while another commit freezes them), then
   * pauses all containers at once. Throws, with nothing left paused by us, when a container is
   * already paused by someone else, or when any pause fails (the ones already paused are resumed).
   */
  async freeze(): Promise<void> {
    active.add(this);
    // the process stays alive while the records are taken, as during the freeze (see the watchdog)
    const hold = setInterval(() => undefined, 60_000);
    try {
      await this.ownership.acquire(this.ids, () => this.interrupted());
      if (this.interrupted()) throw new Error("the containers were resumed while they were being paused (interrupted)");
      for (const id of this.ids) {
        const status = await this.client.taskStatus(id);
        if (status === "PAUSED" || status === "PAUSING") {
          throw new PausedByOther(this.name(id), NOT_A_COMMIT.replace("<id>", id));
        }
      }
    } catch (e) {
      await this.ownership.release();
      active.delete(this);
      clearInterval(hold);
      throw e;
    }
    this.startedAt = performance.now();
    this.timer = setTimeout(() => {
      this.log(`watchdog: freeze exceeded ${this.maxFreezeMs} ms, resuming containers`);
      this.abort.abort(new WatchdogExpired(this.maxFreezeMs / 1000));
      void this.thaw().catch(() => undefined);
    }, this.maxFreezeMs);
    clearInterval(hold);
    // Referenced on purpose: while containers are frozen this timer keeps the process alive, whatever the
    // gRPC connection does (grpc-js, used before, left its connection unreferenced with a call in flight:
    // the event loop emptied and Node exited with code 0 and no result, the containers paused). doThaw clears it.
    const pausing = Promise.allSettled(
      this.ids.map(async (id) => {
        try {
          await this.client.pause(id);
        } catch (e) {
          if (e instanceof ContainerdError && UNCERTAIN.has(e.code)) {
            // the pause may have happened: ours to resume (resuming a running container is harmless)
            this.paused.push(id);
            throw e;
          }
          if (e instanceof ContainerdError && ["PAUSED", "PAUSING"].includes((await this.client.taskStatus(id)) ?? "")) {
            // paused by someone else between our check and our pause: theirs, never resumed by us
            this.foreign.add(id);
            throw new PausedByOther(this.name(id), NOT_A_COMMIT.replace("<id>", id));
          }
          throw e;
        }
        this.paused.push(id);
      }),
    );
    this.pausing = pausing;
    const results = await pausing;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.thaw().catch((e: unknown) => {
        this.log(`resume after a failed pause: ${e instanceof Error ? e.message : String(e)}`);
      });
      throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }
    if (this.abort.signal.aborted) throw this.abort.signal.reason as Error;
    if (this.interrupted()) throw new Error("the containers were resumed while they were being paused (interrupted)");
  }

  /** A thaw has started (a signal, the watchdog): read through a call, as it changes across awaits. */
  private interrupted(): boolean {
    return this.thawing !== undefined;
  }

  /** Resumes every container this freezer paused; idempotent, retried while containerd is unreachable. */
  thaw(): Promise<void> {
    this.thawing ??= this.doThaw();
    return this.thawing;
  }

  private async doThaw(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    // keep the process alive until the resume calls are answered (see the watchdog above)
    const hold = setInterval(() => undefined, 60_000);
    try {
      await this.resumeAll();
    } finally {
      clearInterval(hold);
    }
  }

  private async resumeAll(): Promise<void> {
    if (this.pausing !== undefined) {
      await Promise.race([this.pausing, new Promise((r) => setTimeout(r, 10_000).unref())]);
    }
    const errors: string[] = [];
    const broken: string[] = [];
    const froze = this.startedAt !== undefined;
    // Only containers whose record we hold and that nobody else paused: a pause still in flight
    // after the wait above counts as ours.
    const ours = this.ids.filter((id) => this.ownership.holds(id) && !this.foreign.has(id));
    await Promise.all(
      ours.map(async (id) => {
        // the check before thaw: our record still ours, the container still paused (one round trip)
        try {
          const [rec, status] = await Promise.all([this.ownership.read(id), this.client.taskStatus(id)]);
          if (rec !== undefined && rec.token !== this.ownership.token) {
            this.ownership.keep(id);
            broken.push(`the freeze record of container ${this.name(id)} was taken over by another commit (snapshot ${rec.owner || "without UID"}); not resumed by us`);
            return;
          }
          if (this.paused.includes(id) && status !== "PAUSED" && status !== "PAUSING") {
            broken.push(`container ${this.name(id)} was resumed by someone else during the freeze (${status ?? "no task"})`);
            return;
          }
        } catch {
          // containerd unreachable: the resume below retries; a record is only taken over after it expires
        }
        for (let attempt = 0; ; attempt++) {
          try {
            await this.client.resume(id);
            return;
          } catch (e) {
            // already running (or gone): nothing to resume
            if (e instanceof ContainerdError) {
              const status = await this.client.taskStatus(id).catch(() => "UNREACHABLE" as const);
              if (status !== "PAUSED" && status !== "PAUSING" && status !== "UNREACHABLE") return;
            }
            if (attempt >= 5) {
              // still frozen: the record stays, so this snapshot's unpause Job can resume it
              this.ownership.keep(id);
              errors.push(`${id}: ${e instanceof Error ? e.message : String(e)}`);
              return;
            }
            await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
          }
        }
      }),
    );
    if (froze) this.endedAt ??= performance.now();
    this.paused = [];
    await this.ownership.release();
    active.delete(this);
    if (errors.length > 0) throw new Error(`could not resume containers: ${errors.join("; ")}`);
    if (broken.length > 0) throw new FreezeBroken(broken);
  }
}

/** Resumes every container any freezer of this process still holds (for signal handlers). */
export async function thawAll(): Promise<void> {
  await Promise.allSettled([...active].map((f) => f.thaw()));
}
