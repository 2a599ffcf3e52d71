// containerd's gRPC API, reached over its unix socket (./grpc.ts). Only the services, methods and
// fields the committer needs are defined (./proto, written for this project with containerd's field
// numbers, compiled into ./schema.generated.ts). The namespace travels in the `containerd-namespace`
// metadata key, a lease (when one is held) in `containerd-lease`, so everything created under it is
// protected from garbage collection until the lease is deleted.
import { GrpcChannel, GrpcError, GrpcStatus, type GrpcStatusCode } from "./grpc.js";
import { decode, encode } from "./protobuf.js";
import { CONTAINERD_METHODS, CONTAINERD_SCHEMA, type ContainerdMethod } from "./schema.generated.js";
import type {
  Container,
  ContentInfo,
  Descriptor,
  Image,
  Lease,
  Mount,
  ProcessStatus,
  SnapshotInfo,
  TaskProcess,
} from "./types.js";

export const DEFAULT_SOCKET = "/run/containerd/containerd.sock";
export const DEFAULT_NAMESPACE = "k8s.io";

/** An RPC failure, naming the call and (for connection failures) the socket. */
export class ContainerdError extends Error {
  constructor(
    readonly rpc: string,
    readonly code: GrpcStatusCode,
    message: string,
  ) {
    super(message);
    this.name = "ContainerdError";
  }
  get notFound(): boolean {
    return this.code === GrpcStatus.NOT_FOUND;
  }
  get alreadyExists(): boolean {
    return this.code === GrpcStatus.ALREADY_EXISTS;
  }
}

export interface ContainerdOptions {
  /** Socket path (`/run/containerd/containerd.sock`) or `unix://` address. */
  readonly socket: string;
  readonly namespace: string;
  /** Default deadline per unary call. */
  readonly timeoutMs?: number;
}

interface CallOptions {
  readonly timeoutMs?: number;
}

function socketPath(socket: string): string {
  return socket.replace(/^unix:(\/\/)?/, "");
}

/** A client whose every call runs under one containerd lease (see `ContainerdClient.leased`). */
export type LeasedClient = ContainerdClient & { readonly lease: string };

export class ContainerdClient {
  readonly socket: string;
  readonly namespace: string;
  /** The lease every call of this client runs under (what the calls create is kept from containerd's GC). */
  readonly lease: string | undefined;
  private readonly channel: GrpcChannel;
  private readonly timeoutMs: number;

  constructor(opts: ContainerdOptions, shared?: { readonly channel: GrpcChannel; readonly lease: string }) {
    this.socket = opts.socket;
    this.namespace = opts.namespace;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.lease = shared?.lease;
    // containerd's own clients raise the message limit: manifests, specs and content chunks can be large
    this.channel = shared?.channel ?? new GrpcChannel(socketPath(opts.socket), 64 * 1024 * 1024);
  }

  /**
   * The same connection with every call under lease `id` (created by the caller, see withLease), so
   * views, diffs and content reads cannot be garbage-collected mid-commit and no call can forget it.
   */
  leased(id: string): LeasedClient {
    return new ContainerdClient({ socket: this.socket, namespace: this.namespace, timeoutMs: this.timeoutMs }, { channel: this.channel, lease: id }) as LeasedClient;
  }

  /** Closes the connection (shared with the clients `leased()` made from this one). */
  close(): void {
    this.channel.close();
  }

  private metadata(): Record<string, string> {
    const md: Record<string, string> = { "containerd-namespace": this.namespace };
    if (this.lease !== undefined) md["containerd-lease"] = this.lease;
    return md;
  }

  private wrap(rpc: string, err: unknown): Error {
    if (!(err instanceof GrpcError)) return err instanceof Error ? err : new Error(String(err));
    const code = err.code;
    const details = err.details.trim();
    if (code === GrpcStatus.UNAVAILABLE) {
      return new ContainerdError(rpc, code, `cannot reach containerd at ${this.socket} (CONTAINERD_SOCKET) for ${rpc}: ${details}`);
    }
    if (code === GrpcStatus.DEADLINE_EXCEEDED) {
      return new ContainerdError(rpc, code, `containerd at ${this.socket} (CONTAINERD_SOCKET) did not answer ${rpc} in time: ${details}`);
    }
    return new ContainerdError(rpc, code, `containerd ${rpc} failed (namespace ${this.namespace}): ${details}`);
  }

  private static rpcName(method: ContainerdMethod): string {
    return method.slice(method.lastIndexOf(".") + 1).replace("/", ".");
  }

  async unary<Res>(method: ContainerdMethod, req: object, opts: CallOptions = {}): Promise<Res> {
    const m = CONTAINERD_METHODS[method];
    const body = encode(CONTAINERD_SCHEMA, m.request, req);
    try {
      const res = await this.channel.unary(m.path, body, { metadata: this.metadata(), deadline: Date.now() + (opts.timeoutMs ?? this.timeoutMs) });
      return decode(CONTAINERD_SCHEMA, m.response, res) as Res;
    } catch (e) {
      throw this.wrap(ContainerdClient.rpcName(method), e);
    }
  }

  async *serverStream<Res>(method: ContainerdMethod, req: object, opts: CallOptions = {}): AsyncGenerator<Res> {
    const m = CONTAINERD_METHODS[method];
    const body = encode(CONTAINERD_SCHEMA, m.request, req);
    const deadline = opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : undefined;
    try {
      for await (const msg of this.channel.serverStream(m.path, body, { metadata: this.metadata(), deadline })) {
        yield decode(CONTAINERD_SCHEMA, m.response, msg) as Res;
      }
    } catch (e) {
      throw this.wrap(ContainerdClient.rpcName(method), e);
    }
  }

  // ---- typed calls ------------------------------------------------------------------------------

  async version(): Promise<{ version: string; revision: string }> {
    return this.unary("version.v1.Version/Version", {}, { timeoutMs: 5_000 });
  }

  async listContainers(filters: string[]): Promise<Container[]> {
    const res = await this.unary<{ containers: Container[] }>("containers.v1.Containers/List", { filters });
    return res.containers;
  }

  async getContainer(id: string): Promise<Container> {
    const res = await this.unary<{ container: Container }>("containers.v1.Containers/Get", { id });
    return res.container;
  }

  async getTask(containerId: string): Promise<TaskProcess> {
    const res = await this.unary<{ process: TaskProcess }>("tasks.v1.Tasks/Get", { container_id: containerId });
    return res.process;
  }

  /** The task's status, or undefined when the container has no task (never started or deleted). */
  async taskStatus(containerId: string): Promise<ProcessStatus | undefined> {
    try {
      return (await this.getTask(containerId)).status;
    } catch (e) {
      if (e instanceof ContainerdError && e.notFound) return undefined;
      throw e;
    }
  }

  async pause(containerId: string): Promise<void> {
    await this.unary("tasks.v1.Tasks/Pause", { container_id: containerId });
  }

  async resume(containerId: string): Promise<void> {
    await this.unary("tasks.v1.Tasks/Resume", { container_id: containerId });
  }

  async snapshotMounts(snapshotter: string, key: string): Promise<Mount[]> {
    const res = await this.unary<{ mounts: Mount[] }>("snapshots.v1.Snapshots/Mounts", { snapshotter, key });
    return res.mounts;
  }

  async statSnapshot(snapshotter: string, key: string): Promise<SnapshotInfo> {
    const res = await this.unary<{ info: SnapshotInfo }>("snapshots.v1.Snapshots/Stat", { snapshotter, key });
    return res.info;
  }

  async viewSnapshot(snapshotter: string, key: string, parent: string): Promise<Mount[]> {
    const res = await this.unary<{ mounts: Mount[] }>("snapshots.v1.Snapshots/View", { snapshotter, key, parent, labels: {} });
    return res.mounts;
  }

  async removeSnapshot(snapshotter: string, key: string): Promise<void> {
    await this.unary("snapshots.v1.Snapshots/Remove", { snapshotter, key });
  }

  async getImage(name: string): Promise<Image> {
    const res = await this.unary<{ image: Image }>("images.v1.Images/Get", { name });
    return res.image;
  }

  async contentInfo(digest: string): Promise<ContentInfo> {
    const res = await this.unary<{ info: ContentInfo }>("content.v1.Content/Info", { digest });
    return res.info;
  }

  /** Streams a blob from the content store. */
  async *readContent(digest: string): AsyncGenerator<Buffer> {
    const stream = this.serverStream<{ offset: number; data: Buffer }>("content.v1.Content/Read", { digest, offset: 0, size: 0 });
    for await (const chunk of stream) yield chunk.data;
  }

  async readContentAll(digest: string, maxBytes = 16 * 1024 * 1024): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const b of this.readContent(digest)) {
      n += b.length;
      if (n > maxBytes) throw new Error(`content ${digest} is larger than ${maxBytes} bytes`);
      parts.push(b);
    }
    return Buffer.concat(parts);
  }

  async createLease(id: string, labels: Record<string, string>): Promise<void> {
    await this.unary("leases.v1.Leases/Create", { id, labels });
  }

  async deleteLease(id: string): Promise<void> {
    await this.unary("leases.v1.Leases/Delete", { id, sync: false });
  }

  /** Leases matching any of the filters (containerd filter syntax, e.g. `id==x`). */
  async listLeases(filters: string[]): Promise<Lease[]> {
    const res = await this.unary<{ leases: Lease[] }>("leases.v1.Leases/List", { filters });
    return res.leases;
  }

  /** containerd's Diff service: the changes from `left` to `right` as a layer in the content store. */
  async diff(
    left: Mount[],
    right: Mount[],
    mediaType: string,
    ref: string,
    timeoutMs: number,
  ): Promise<Descriptor> {
    const res = await this.unary<{ diff: Descriptor }>("diff.v1.Diff/Diff", { left, right, media_type: mediaType, ref, labels: {} }, { timeoutMs });
    return res.diff;
  }
}
