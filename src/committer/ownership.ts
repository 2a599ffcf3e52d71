// Who froze a container. Before pausing, a commit creates a freeze record for each container: a
// containerd lease whose id is derived from the container id. containerd creates a lease atomically
// (ALREADY_EXISTS when the id is taken), so of two commits of the same pod only one holds the
// record; it lives in containerd's database, so it survives a SIGKILLed committer and tells the
// controller's unpause Job which snapshot froze the container. The record promises a release time
// (the holder's watchdog bound plus a margin); a record past it is stale: its holder is gone.
// docs/committer.md "Who owns a freeze" has the rules.
import { createHash, randomBytes } from "node:crypto";
import { ContainerdError } from "../containerd/client.js";
import { LABEL_GC_EXPIRE, gcTime } from "../containerd/lease.js";
import type { Lease, ProcessStatus } from "../containerd/types.js";

export const FREEZE_RECORD_PREFIX = "sandbox-snapshot-freeze-";
const TAKEOVER_PREFIX = "sandbox-snapshot-takeover-";
export const LABEL_FREEZE_OWNER = "sandbox.opensandbox.io/freeze-owner";
export const LABEL_FREEZE_TOKEN = "sandbox.opensandbox.io/freeze-token";
export const LABEL_FREEZE_CONTAINER = "sandbox.opensandbox.io/freeze-container";
export const LABEL_FREEZE_EXPIRES = "sandbox.opensandbox.io/freeze-expires";

/**
 * Added to the holder's watchdog bound: its resume retries and the release take seconds. Safety does
 * not rest on it (a stale record is only replaced on a running container, and a late holder never
 * deletes); it only decides how soon a waiting commit gives up on a holder that was killed.
 */
export const RECORD_MARGIN_MS = 10_000;
/** containerd's garbage collector removes a record this long after its release time (never while useful). */
const RECORD_RETENTION_MS = 24 * 60 * 60 * 1000;
/** A holder deletes its record only this long before the release time; later it lets it go stale. */
const RELEASE_MARGIN_MS = 5_000;
/** A takeover (replacing a stale record) takes milliseconds; one older than this was interrupted. */
const TAKEOVER_LIFETIME_MS = 30_000;

/** The parts of the containerd client the records need (a fake in unit tests). */
export interface RecordStore {
  createLease(id: string, labels: Record<string, string>): Promise<void>;
  deleteLease(id: string): Promise<void>;
  listLeases(filters: string[]): Promise<Lease[]>;
  taskStatus(containerId: string): Promise<ProcessStatus | undefined>;
}

export interface FreezeRecord {
  readonly id: string;
  readonly container: string;
  /** The snapshot UID of the commit that holds it ("" for a commit run without SNAPSHOT_UID). */
  readonly owner: string;
  /** Unique per commit run. */
  readonly token: string;
  /** Epoch ms after which the record is stale (0 when unreadable). */
  readonly expiresAt: number;
}

function hash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 32);
}

/** The record's lease id: fixed per container, valid as a containerd identifier whatever the container id. */
export function recordId(containerId: string): string {
  return `${FREEZE_RECORD_PREFIX}${hash(containerId)}`;
}

export function recordLabels(containerId: string, owner: string, token: string, expiresAt: number): Record<string, string> {
  return {
    [LABEL_FREEZE_OWNER]: owner,
    [LABEL_FREEZE_TOKEN]: token,
    [LABEL_FREEZE_CONTAINER]: containerId,
    [LABEL_FREEZE_EXPIRES]: new Date(expiresAt).toISOString(),
    [LABEL_GC_EXPIRE]: gcTime(expiresAt + RECORD_RETENTION_MS),
  };
}

export function parseRecord(lease: Lease): FreezeRecord {
  const l = lease.labels;
  const expires = Date.parse(l[LABEL_FREEZE_EXPIRES] ?? "");
  return {
    id: lease.id,
    container: l[LABEL_FREEZE_CONTAINER] ?? "",
    owner: l[LABEL_FREEZE_OWNER] ?? "",
    token: l[LABEL_FREEZE_TOKEN] ?? "",
    expiresAt: Number.isFinite(expires) ? expires : 0,
  };
}

export type Verdict =
  /** Held by a commit that is still within its bound: wait for it. */
  | { readonly kind: "wait" }
  /** Stale and the container runs: the holder is gone without harm; replace the record. */
  | { readonly kind: "take-over" }
  /** Stale and the container is still paused: frozen by a commit that stopped; not ours to resume. */
  | { readonly kind: "left-frozen" };

const frozen = (s: ProcessStatus | undefined): boolean => s === "PAUSED" || s === "PAUSING";

/** What a commit may do about someone else's record. Pure. */
export function judge(rec: FreezeRecord, status: ProcessStatus | undefined, now: number): Verdict {
  if (now < rec.expiresAt) return { kind: "wait" };
  return frozen(status) ? { kind: "left-frozen" } : { kind: "take-over" };
}

function who(rec: FreezeRecord): string {
  return rec.owner === "" ? "a commit run without SNAPSHOT_UID" : `the commit of snapshot ${rec.owner}`;
}

/** Another commit is freezing the container and did not finish within the wait bound. */
export class FreezeBusy extends Error {
  constructor(containerName: string, rec: FreezeRecord, waitedMs: number) {
    super(
      `container ${containerName} is being frozen by ${who(rec)} (freeze record ${rec.id}, held until ${new Date(rec.expiresAt).toISOString()}); waited ${Math.round(waitedMs / 1000)} s for it, giving up: retry the snapshot when that commit has finished`,
    );
    this.name = "FreezeBusy";
  }
}

/** The container is paused and we did not pause it: we never resume it, so we cannot snapshot it. */
export class PausedByOther extends Error {
  constructor(containerName: string, reason: string) {
    super(`container ${containerName} is paused, ${reason}; a commit only resumes what it paused itself, so it is left paused and not snapshotted`);
    this.name = "PausedByOther";
  }
}

export function leftFrozenReason(rec: FreezeRecord): string {
  return `frozen by ${who(rec)}, which stopped without resuming it (freeze record ${rec.id}, expired ${new Date(rec.expiresAt).toISOString()}); that snapshot's unpause Job resumes it (image-committer unpause with SNAPSHOT_UID=${rec.owner === "" ? '""' : rec.owner})`;
}

export const NOT_A_COMMIT = "not by a commit (no freeze record: paused by a user or another tool); resume it with `ctr -n k8s.io tasks resume <id>` and retry";

export interface OwnershipOptions {
  /** How long the record promises to be released in (the watchdog bound plus RECORD_MARGIN_MS). */
  readonly lifetimeMs: number;
  /** How long to wait for another commit's freeze to end. */
  readonly waitMs: number;
  /** Wall clock, epoch ms (records are compared across processes on one node). */
  readonly now?: () => number;
  readonly pollMs?: number;
  readonly log?: (msg: string) => void;
  /** Container id → Kubernetes container name, for messages. */
  readonly names?: ReadonlyMap<string, string>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The freeze records one commit run holds. */
export class FreezeOwnership {
  readonly token = randomBytes(8).toString("hex");
  private readonly held = new Map<string, FreezeRecord>();
  private readonly now: () => number;

  constructor(
    private readonly store: RecordStore,
    /** The snapshot UID ("" when none). */
    readonly owner: string,
    private readonly opts: OwnershipOptions,
  ) {
    this.now = opts.now ?? Date.now;
  }

  private name(id: string): string {
    return this.opts.names?.get(id) ?? id;
  }

  /** Containers whose record this run holds. */
  holds(containerId: string): boolean {
    return this.held.has(containerId);
  }

  /** The record of a container, if any. */
  async read(containerId: string): Promise<FreezeRecord | undefined> {
    const id = recordId(containerId);
    const found = (await this.store.listLeases([`id==${id}`])).find((l) => l.id === id);
    return found === undefined ? undefined : parseRecord(found);
  }

  /**
   * Takes the records of all containers, or none: when one is held by a live commit, the ones taken
   * are given back and the whole set is tried again (nobody holds while waiting, so two commits cannot
   * deadlock). Waits at most `waitMs`; throws FreezeBusy then, or PausedByOther for a container left
   * frozen by a commit that stopped.
   */
  async acquire(containerIds: readonly string[], stopped: () => boolean = () => false): Promise<void> {
    const started = this.now();
    const ids = [...new Set(containerIds)].sort();
    for (let round = 0; ; round++) {
      // interrupted (a signal) while waiting: take nothing more
      if (stopped()) throw new Error("interrupted while waiting for another commit's freeze to end");
      const blocker = await this.tryAll(ids);
      if (blocker === undefined) return;
      const waited = this.now() - started;
      if (waited >= this.opts.waitMs) throw new FreezeBusy(this.name(blocker.container), blocker, waited);
      if (round === 0) this.opts.log?.(`container ${this.name(blocker.container)} is being frozen by ${who(blocker)}: waiting for it to finish`);
      await sleep(Math.min(this.opts.pollMs ?? 100, Math.max(1, this.opts.waitMs - waited)));
    }
  }

  /** One attempt at the whole set; the record that blocks it, if any. */
  private async tryAll(ids: readonly string[]): Promise<FreezeRecord | undefined> {
    for (const cid of ids) {
      let blocker: FreezeRecord | undefined;
      try {
        blocker = await this.tryOne(cid);
      } catch (e) {
        await this.release();
        throw e;
      }
      if (blocker !== undefined) {
        await this.release();
        return blocker;
      }
    }
    return undefined;
  }

  private labels(cid: string): { labels: Record<string, string>; record: FreezeRecord } {
    const expiresAt = this.now() + this.opts.lifetimeMs;
    return {
      labels: recordLabels(cid, this.owner, this.token, expiresAt),
      record: { id: recordId(cid), container: cid, owner: this.owner, token: this.token, expiresAt },
    };
  }

  private async create(cid: string): Promise<boolean> {
    const { labels, record } = this.labels(cid);
    try {
      await this.store.createLease(record.id, labels);
    } catch (e) {
      if (e instanceof ContainerdError && e.alreadyExists) return false;
      throw e;
    }
    this.held.set(cid, record);
    return true;
  }

  /** Takes one record; returns the live record in the way, or undefined when taken. */
  private async tryOne(cid: string): Promise<FreezeRecord | undefined> {
    for (let attempt = 0; attempt < 5; attempt++) {
      if (await this.create(cid)) return undefined;
      const rec = await this.read(cid);
      if (rec === undefined) continue; // released meanwhile
      const verdict = judge(rec, await this.store.taskStatus(cid), this.now());
      if (verdict.kind === "wait") return rec;
      if (verdict.kind === "left-frozen") throw new PausedByOther(this.name(cid), leftFrozenReason(rec));
      this.opts.log?.(`container ${this.name(cid)}: replacing the stale freeze record of ${who(rec)} (expired ${new Date(rec.expiresAt).toISOString()}; the container runs)`);
      if (await this.takeOver(cid, rec)) return undefined;
    }
    const rec = await this.read(cid);
    return rec ?? { id: recordId(cid), container: cid, owner: "", token: "", expiresAt: this.now() };
  }

  /**
   * Replaces a stale record. Delete-then-create alone would let two commits that both saw it stale
   * delete each other's fresh record; so the replacing commit first creates a takeover lease named
   * after the stale record's token (atomic: one winner per stale record), then re-reads the record.
   */
  private async takeOver(cid: string, stale: FreezeRecord): Promise<boolean> {
    const tid = `${TAKEOVER_PREFIX}${hash(`${stale.id}/${stale.token}`)}`;
    const expires = this.now() + TAKEOVER_LIFETIME_MS;
    try {
      await this.store.createLease(tid, { [LABEL_FREEZE_EXPIRES]: new Date(expires).toISOString(), [LABEL_GC_EXPIRE]: gcTime(expires + RECORD_RETENTION_MS) });
    } catch (e) {
      if (!(e instanceof ContainerdError && e.alreadyExists)) throw e;
      const t = (await this.store.listLeases([`id==${tid}`])).find((l) => l.id === tid);
      // a takeover interrupted half-way (its committer killed) would block this record for good
      if (t !== undefined && parseRecord(t).expiresAt <= this.now()) await this.store.deleteLease(tid).catch(() => undefined);
      return false;
    }
    try {
      const cur = await this.read(cid);
      if (cur?.token !== stale.token) return false;
      if (frozen(await this.store.taskStatus(cid))) return false; // re-judged on the next attempt
      await this.store.deleteLease(stale.id);
      return await this.create(cid);
    } finally {
      await this.store.deleteLease(tid).catch(() => undefined);
    }
  }

  /**
   * Gives back the records of the given containers (default: all held). A record is deleted only
   * while well within its promised time and still ours; past it, it is left to go stale, so it can
   * never delete a record another commit has taken over since. Failures are logged: a record left
   * behind only goes stale.
   */
  async release(containerIds?: readonly string[]): Promise<void> {
    for (const cid of containerIds ?? [...this.held.keys()]) {
      const rec = this.held.get(cid);
      if (rec === undefined) continue;
      this.held.delete(cid);
      if (this.now() > rec.expiresAt - RELEASE_MARGIN_MS) {
        this.opts.log?.(`container ${this.name(cid)}: freeze record ${rec.id} is past its release time; left to expire`);
        continue;
      }
      try {
        const cur = await this.read(cid);
        if (cur?.token === this.token) await this.store.deleteLease(rec.id);
      } catch (e) {
        this.opts.log?.(`container ${this.name(cid)}: could not delete freeze record ${rec.id} (it goes stale at ${new Date(rec.expiresAt).toISOString()}): ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }

  /** Forgets a record without deleting it: it must stay for the unpause Job (e.g. a resume failed). */
  keep(containerId: string): void {
    this.held.delete(containerId);
  }
}
