// A gRPC client channel over HTTP/2 on a unix socket, for the unary and server-streaming calls the
// committer makes to containerd. It is ours rather than a general gRPC library because the committer's
// fixed cost is what a sandbox's small commits pay: this channel loads in a few milliseconds (node:http2
// is built in), a general client and its runtime .proto compiler took ~180 ms of CPU at every start.
// Wire format (grpc.io "gRPC over HTTP2"): POST to /<service>/<method>, `content-type: application/grpc`,
// each message prefixed by a compressed flag (always 0 here) and a 4-byte big-endian length; the status
// comes in trailers (`grpc-status`, percent-encoded `grpc-message`), or in the headers of a
// trailers-only answer.
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { connect as netConnect } from "node:net";

/** gRPC status codes (grpc.io "Status codes and their use in gRPC"). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

const CODES = new Set<number>(Object.values(GrpcStatus));

/** A call that ended with a status other than OK (or never reached the server: UNAVAILABLE). */
export class GrpcError extends Error {
  constructor(
    readonly code: GrpcStatusCode,
    readonly details: string,
  ) {
    super(`${codeName(code)}: ${details}`);
    this.name = "GrpcError";
  }
}

function codeName(code: number): string {
  return Object.entries(GrpcStatus).find(([, v]) => v === code)?.[0] ?? String(code);
}

export interface CallOptions {
  /** Metadata sent as request headers (lower-case ASCII keys and values). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute deadline (ms since the epoch); none when undefined. */
  readonly deadline?: number;
}

const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const HEADER_BYTES = 5;

function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, HEADER_BYTES);
  return out;
}

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The status a set of headers or trailers carries, undefined when they carry none. */
function statusOf(h: IncomingHttpHeaders): GrpcError | null | undefined {
  const raw = header(h, "grpc-status");
  if (raw === undefined) return undefined;
  const n = Number(raw);
  const code = (Number.isInteger(n) && CODES.has(n) ? n : GrpcStatus.UNKNOWN) as GrpcStatusCode;
  if (code === GrpcStatus.OK) return null;
  let details = header(h, "grpc-message") ?? "";
  try {
    details = decodeURIComponent(details);
  } catch {
    // not percent-encoded after all: keep it as sent
  }
  return new GrpcError(code, details);
}

/** HTTP statuses a proxy or a non-gRPC server may answer with, as gRPC codes (grpc's http-grpc-status-mapping). */
function httpStatus(status: number): GrpcStatusCode {
  if (status === 400) return GrpcStatus.INTERNAL;
  if (status === 401) return GrpcStatus.UNAUTHENTICATED;
  if (status === 403) return GrpcStatus.PERMISSION_DENIED;
  if (status === 404) return GrpcStatus.UNIMPLEMENTED;
  if (status === 429 || status === 502 || status === 503 || status === 504) return GrpcStatus.UNAVAILABLE;
  return GrpcStatus.UNKNOWN;
}

/** Splits a byte stream into gRPC messages. */
class Deframer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): Buffer[] {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.pendingBytes < HEADER_BYTES) return out;
      const head = this.peek(HEADER_BYTES);
      if (head[0] !== 0) throw new GrpcError(GrpcStatus.INTERNAL, "compressed message received, but no compression was negotiated");
      const n = head.readUInt32BE(1);
      if (n > this.maxBytes) throw new GrpcError(GrpcStatus.RESOURCE_EXHAUSTED, `received message larger than max (${n} vs. ${this.maxBytes})`);
      if (this.pendingBytes < HEADER_BYTES + n) return out;
      const all = this.take(HEADER_BYTES + n);
      out.push(all.subarray(HEADER_BYTES));
    }
  }

  get empty(): boolean {
    return this.pendingBytes === 0;
  }

  private peek(n: number): Buffer {
    const first = this.pending[0];
    if (first !== undefined && first.length >= n) return first;
    return Buffer.concat(this.pending).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending);
    const rest = all.subarray(n);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    return all.subarray(0, n);
  }
}

/**
 * One HTTP/2 connection to a gRPC server on a unix socket, opened at the first call and again after
 * it was lost. It keeps the process alive exactly while calls are in flight.
 */
export class GrpcChannel {
  private session: ClientHttp2Session | undefined;
  private active = 0;
  private closed = false;

  constructor(
    readonly socketPath: string,
    private readonly maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
  ) {}

  private open(): ClientHttp2Session {
    const current = this.session;
    if (current !== undefined && !current.closed && !current.destroyed) return current;
    const s = connect("http://localhost", { createConnection: () => netConnect(this.socketPath) });
    s.on("error", () => undefined); // each stream reports it
    const forget = (): void => {
      if (this.session === s) this.session = undefined;
    };
    s.on("close", forget);
    s.on("goaway", forget); // calls in flight finish on it; new ones open another connection
    this.session = s;
    return s;
  }

  private begin(path: string, request: Buffer, opts: CallOptions): ClientHttp2Stream {
    if (this.closed) throw new GrpcError(GrpcStatus.UNAVAILABLE, "channel closed");
    const session = this.open();
    const headers: Record<string, string> = {
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...opts.metadata,
    };
    if (opts.deadline !== undefined) headers["grpc-timeout"] = `${Math.max(1, Math.min(99_999_999, Math.ceil(opts.deadline - Date.now())))}m`;
    const stream = session.request(headers, { endStream: false });
    this.active++;
    session.ref();
    let done = false;
    stream.once("close", () => {
      if (done) return;
      done = true;
      this.active--;
      if (this.active === 0 && !session.destroyed) session.unref();
    });
    stream.end(frame(request));
    return stream;
  }

  /** One request, one answer. */
  unary(path: string, request: Buffer, opts: CallOptions): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = this.begin(path, request, opts);
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
        return;
      }
      const call = new CallState(stream, opts.deadline, this.maxMessageBytes);
      const messages: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => {
        call.received(chunk, (m) => messages.push(m));
      });
      call.finished.then(
        () => {
          const m = messages[0];
          if (messages.length !== 1 || m === undefined) reject(new GrpcError(GrpcStatus.INTERNAL, `expected one response message, got ${messages.length}`));
          else resolve(m);
        },
        (e: unknown) => {
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** One request, a stream of answers; leaving the loop early cancels the call. */
  async *serverStream(path: string, request: Buffer, opts: CallOptions): AsyncGenerator<Buffer> {
    const stream = this.begin(path, request, opts);
    const call = new CallState(stream, opts.deadline, this.maxMessageBytes);
    call.finished.catch(() => undefined); // awaited below
    let complete = false;
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        const out: Buffer[] = [];
        call.received(chunk, (m) => out.push(m));
        yield* out;
      }
      await call.finished;
      complete = true;
    } catch (e) {
      await call.finished; // the call's own error (status, deadline, connection) says more than the stream's
      throw e;
    } finally {
      if (!complete) call.cancel();
    }
  }

  close(): void {
    this.closed = true;
    const s = this.session;
    this.session = undefined;
    if (s !== undefined && !s.destroyed) s.close();
  }
}

/** Status, deadline and errors of one call. `finished` settles once, with the call's outcome. */
class CallState {
  readonly finished: Promise<void>;
  private settle!: (e: Error | null) => void;
  private settled = false;
  /** The status the server sent (null: OK), once its headers or trailers carried one. */
  private status: GrpcError | null | undefined;
  private readonly deframer: Deframer;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: ClientHttp2Stream,
    deadline: number | undefined,
    maxBytes: number,
  ) {
    this.deframer = new Deframer(maxBytes);
    this.finished = new Promise<void>((resolve, reject) => {
      this.settle = (e) => {
        if (this.settled) return;
        this.settled = true;
        if (this.timer !== undefined) clearTimeout(this.timer);
        if (e === null) resolve();
        else reject(e);
      };
    });
    if (deadline !== undefined) {
      this.timer = setTimeout(() => {
        this.fail(new GrpcError(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded"));
      }, Math.max(0, deadline - Date.now()));
    }
    stream.on("response", (h) => {
      const status = Number(h[":status"]);
      if (status !== 200) this.fail(new GrpcError(httpStatus(status), `HTTP status ${status} from the server`));
      else this.status = statusOf(h); // set in a trailers-only answer: the whole answer is its status
    });
    stream.on("trailers", (t: IncomingHttpHeaders) => {
      const s = statusOf(t); // null is OK
      this.status = s !== undefined ? s : new GrpcError(GrpcStatus.UNKNOWN, "the server ended the call without a status");
    });
    // the answer is complete once its body was read to the end (data may still be buffered when the trailers arrive)
    stream.on("end", () => {
      // no status at all: the connection was lost (or the server speaks no gRPC); the call may or may not have
      // happened, which UNAVAILABLE says to callers that must know (a pause in doubt is treated as done)
      if (this.status === undefined) this.settle(new GrpcError(GrpcStatus.UNAVAILABLE, "the call ended without a status (connection lost?)"));
      else if (this.status === null && !this.deframer.empty) this.settle(new GrpcError(GrpcStatus.INTERNAL, "the answer ended inside a message"));
      else this.settle(this.status);
    });
    stream.on("error", (e: Error & { cause?: unknown }) => {
      // a connection that failed or was lost: its cause, when there is one, names it more precisely
      const cause = e.cause instanceof Error ? e.cause : e;
      this.settle(new GrpcError(GrpcStatus.UNAVAILABLE, cause.message));
    });
    stream.on("close", () => {
      const code = stream.rstCode;
      if (code !== constants.NGHTTP2_NO_ERROR) {
        this.settle(new GrpcError(code === constants.NGHTTP2_REFUSED_STREAM ? GrpcStatus.UNAVAILABLE : GrpcStatus.INTERNAL, `stream reset (HTTP/2 error ${code})`));
      }
      this.settle(new GrpcError(GrpcStatus.UNAVAILABLE, "the connection closed before the call's status arrived"));
    });
  }

  received(chunk: Buffer, each: (m: Buffer) => void): void {
    if (this.settled) return;
    try {
      for (const m of this.deframer.push(chunk)) each(m);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    }
  }

  fail(e: Error): void {
    this.settle(e);
    this.cancel();
  }

  cancel(): void {
    this.settle(new GrpcError(GrpcStatus.CANCELLED, "Cancelled on client"));
    if (!this.stream.closed && !this.stream.destroyed) this.stream.close(constants.NGHTTP2_CANCEL);
  }
}
