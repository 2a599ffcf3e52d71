// The containerd lease a commit's work runs under: views, diffs and content it reads stay out of
// containerd's garbage collection until it is done, and a lease we fail to delete goes by itself.
import { randomBytes } from "node:crypto";
import type { ContainerdClient, LeasedClient } from "./client.js";

/** containerd's GC label: the lease (and what it holds) is collected after this time. */
export const LABEL_GC_EXPIRE = "containerd.io/gc.expire";

/** containerd's timestamp form for labels (RFC 3339, whole seconds). */
export function gcTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, "Z");
}

export interface LeaseOptions {
  /** Prefix of the lease's id (a random suffix makes it unique). */
  readonly prefix: string;
  /** How long containerd keeps the lease should we never delete it. */
  readonly ttlMs: number;
  /** Told when the lease could not be deleted (it then expires by itself). */
  readonly onDeleteError?: (message: string) => void;
}

/** Creates a lease, runs `fn` with a client whose every call carries it, then deletes it. */
export async function withLease<T>(client: ContainerdClient, opts: LeaseOptions, fn: (leased: LeasedClient) => Promise<T>): Promise<T> {
  const id = `${opts.prefix}-${randomBytes(6).toString("hex")}`;
  const expire = gcTime(Date.now() + opts.ttlMs);
  await client.createLease(id, { [LABEL_GC_EXPIRE]: expire });
  try {
    return await fn(client.leased(id));
  } finally {
    await client.deleteLease(id).catch((e: unknown) => {
      opts.onDeleteError?.(`could not delete lease ${id} (it expires by itself at ${expire}): ${e instanceof Error ? e.message : String(e)}`);
    });
  }
}
