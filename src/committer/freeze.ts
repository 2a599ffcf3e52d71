// Pausing a set of containers together, and making sure they are resumed: by the caller, by the
// watchdog when a freeze outlasts its maximum, or by a signal handler (see `thawAllOnExit`).
import type { ContainerdClient } from "../containerd/client.js";
import { ContainerdError } from "../containerd/client.js";

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

export class Freezer {
  private paused: string[] = [];
  private startedAt: number | undefined;
  private endedAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private thawing: Promise<void> | undefined;
  /** The pause calls in flight: a thaw waits for them, or a late pause would outlive the resume. */
  private pausing: Promise<unknown> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly client: ContainerdClient,
    private readonly ids: readonly string[],
    private readonly maxFreezeMs: number,
    private readonly log: FreezeLog = () => undefined,
  ) {}

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
   * Pauses all containers at once. If any pause fails, the ones already paused are resumed and the
   * error is thrown. A container already paused (left so by an interrupted earlier run) counts as paused.
   */
  async freeze(): Promise<void> {
    active.add(this);
    this.startedAt = performance.now();
    this.timer = setTimeout(() => {
      this.log(`watchdog: freeze exceeded ${this.maxFreezeMs} ms, resuming containers`);
      this.abort.abort(new WatchdogExpired(this.maxFreezeMs / 1000));
      void this.thaw().catch(() => undefined);
    }, this.maxFreezeMs);
    // Referenced on purpose: while containers are frozen this timer keeps the process alive. grpc-js can
    // leave its connection unreferenced with a call in flight; with an unreferenced watchdog the event
    // loop then empties and Node exits (code 0, no result) leaving the containers paused. doThaw clears it.
    const pausing = Promise.allSettled(
      this.ids.map(async (id) => {
        try {
          await this.client.pause(id);
        } catch (e) {
          // runc refuses to pause a paused container; that is the state we want
          if (!(e instanceof ContainerdError) || (await this.client.taskStatus(id)) !== "PAUSED") throw e;
        }
        this.paused.push(id);
      }),
    );
    this.pausing = pausing;
    const results = await pausing;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed !== undefined) {
      await this.thaw();
      throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }
    if (this.abort.signal.aborted) throw this.abort.signal.reason as Error;
    if (this.thawing !== undefined) throw new Error("the containers were resumed while they were being paused (interrupted)");
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
    await Promise.all(
      this.ids.map(async (id) => {
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
              errors.push(`${id}: ${e instanceof Error ? e.message : String(e)}`);
              return;
            }
            await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
          }
        }
      }),
    );
    this.endedAt ??= performance.now();
    this.paused = [];
    active.delete(this);
    if (errors.length > 0) throw new Error(`could not resume containers: ${errors.join("; ")}`);
  }
}

/** Resumes every container any freezer of this process still holds (for signal handlers). */
export async function thawAll(): Promise<void> {
  await Promise.allSettled([...active].map((f) => f.thaw()));
}
