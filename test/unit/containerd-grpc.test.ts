// The gRPC channel against a gRPC server played by an HTTP/2 server on a unix socket: the wire format
// (framing, metadata, grpc-timeout, statuses in trailers or trailers-only headers, percent-encoded
// messages), streams split anywhere, deadlines, lost connections, size limits, and that an idle channel
// never keeps the process alive while a call in flight always does. Real containerd is in the
// integration tests (every committer test goes through this channel).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Http2Server, type ServerHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { GrpcChannel, GrpcError, GrpcStatus } from "../../src/containerd/grpc.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const GRPC = fileURLToPath(new URL("../../src/containerd/grpc.ts", import.meta.url));

type Handler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, body: Buffer) => void;

const frame = (m: Buffer): Buffer => Buffer.concat([Buffer.from([0]), Buffer.from([0, 0, 0, 0].map((_, i) => (m.length >>> (8 * (3 - i))) & 0xff)), m]);

function ok(stream: ServerHttp2Stream, messages: Buffer[]): void {
  stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
  stream.on("wantTrailers", () => {
    stream.sendTrailers({ "grpc-status": "0" });
  });
  stream.end(Buffer.concat(messages.map(frame)));
}

describe("gRPC channel", () => {
  let dir: string;
  let socket: string;
  let server: Http2Server;
  let handler: Handler;
  const seen: { headers: IncomingHttpHeaders; body: Buffer }[] = [];
  const closed: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "grpc-"));
    socket = join(dir, "grpc.sock");
    server = createServer();
    server.on("stream", (stream, headers) => {
      const parts: Buffer[] = [];
      stream.on("data", (b: Buffer) => parts.push(b));
      stream.on("close", () => closed.push(String(headers[":path"])));
      stream.on("error", () => undefined);
      stream.on("end", () => {
        const body = Buffer.concat(parts);
        seen.push({ headers, body });
        handler(stream, headers, body);
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    seen.length = 0;
    closed.length = 0;
  });

  it("sends one framed message with the metadata and the deadline, and returns the one message answered", async () => {
    handler = (s, _h, body) => {
      ok(s, [Buffer.concat([Buffer.from("echo:"), body.subarray(5)])]);
    };
    const ch = new GrpcChannel(socket);
    const res = await ch.unary("/svc.v1.S/Echo", Buffer.from("hello"), { metadata: { "containerd-namespace": "k8s.io" }, deadline: Date.now() + 5000 });
    expect(res.toString()).toBe("echo:hello");
    const h = seen[0]?.headers;
    expect(h?.[":path"]).toBe("/svc.v1.S/Echo");
    expect(h?.["content-type"]).toBe("application/grpc");
    expect(h?.te).toBe("trailers");
    expect(h?.["containerd-namespace"]).toBe("k8s.io");
    expect(Number(/^(\d+)m$/.exec(String(h?.["grpc-timeout"]))?.[1])).toBeGreaterThan(4000);
    expect(seen[0]?.body.subarray(0, 5)).toEqual(Buffer.from([0, 0, 0, 0, 5]));
    // an empty message is a message too
    handler = (s) => {
      ok(s, [Buffer.alloc(0)]);
    };
    expect((await ch.unary("/svc.v1.S/Empty", Buffer.alloc(0), { metadata: {} })).length).toBe(0);
    ch.close();
  });

  it("reports the status of the trailers, percent-decoded, and of a trailers-only answer", async () => {
    const ch = new GrpcChannel(socket);
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      s.on("wantTrailers", () => {
        s.sendTrailers({ "grpc-status": "9", "grpc-message": "task c1 is not paused%3A 100%25 sure" });
      });
      s.end();
    };
    await expect(ch.unary("/svc.v1.S/Resume", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.FAILED_PRECONDITION, details: "task c1 is not paused: 100% sure" });
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "5", "grpc-message": "container x: not found" }, { endStream: true });
    };
    const e = await ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GrpcError);
    expect(e).toMatchObject({ code: GrpcStatus.NOT_FOUND, details: "container x: not found" });
    handler = (s) => {
      s.respond({ ":status": 503 }, { endStream: true });
    };
    await expect(ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc" });
      s.end(); // no status at all: whether the call happened is unknown
    };
    await expect(ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    ch.close();
  });

  it("ends a call at its deadline, cancelling it on the server", async () => {
    handler = () => undefined; // never answers
    const ch = new GrpcChannel(socket);
    const t0 = Date.now();
    await expect(ch.unary("/svc.v1.S/Slow", Buffer.alloc(0), { metadata: {}, deadline: Date.now() + 200 })).rejects.toMatchObject({ code: GrpcStatus.DEADLINE_EXCEEDED });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toContain("/svc.v1.S/Slow");
    ch.close();
  });

  it("streams messages split at any byte, in order, and ends with the status", async () => {
    const messages = [Buffer.from("one"), Buffer.alloc(70_000, 7), Buffer.alloc(0), Buffer.from("four")];
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      s.on("wantTrailers", () => {
        s.sendTrailers({ "grpc-status": "0" });
      });
      const all = Buffer.concat(messages.map(frame));
      // odd-sized writes: frames and their headers cut anywhere
      let at = 0;
      let steps = 0;
      const step = (): void => {
        if (at >= all.length) {
          s.end();
          return;
        }
        const n = [1, 3, 7, 30_000, 2][steps++ % 5] ?? 1;
        s.write(all.subarray(at, at + n), step);
        at += n;
      };
      step();
    };
    const ch = new GrpcChannel(socket);
    const got: Buffer[] = [];
    for await (const m of ch.serverStream("/svc.v1.S/Read", Buffer.alloc(0), { metadata: {} })) got.push(m);
    expect(got).toEqual(messages);
    // an error status after some messages: the messages, then the error
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      s.on("wantTrailers", () => {
        s.sendTrailers({ "grpc-status": "14", "grpc-message": "shutting down" });
      });
      s.end(frame(Buffer.from("first")));
    };
    const before: string[] = [];
    const err = await (async () => {
      for await (const m of ch.serverStream("/svc.v1.S/Read", Buffer.alloc(0), { metadata: {} })) before.push(m.toString());
    })().catch((x: unknown) => x);
    expect(before).toEqual(["first"]);
    expect(err).toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: "shutting down" });
    ch.close();
  });

  it("cancels a stream its reader leaves early", async () => {
    handler = (s) => {
      s.respond({ ":status": 200, "content-type": "application/grpc" });
      const tick = setInterval(() => {
        if (s.closed || s.destroyed) clearInterval(tick);
        else s.write(frame(Buffer.from("more")));
      }, 5);
    };
    const ch = new GrpcChannel(socket);
    let n = 0;
    for await (const _m of ch.serverStream("/svc.v1.S/Endless", Buffer.alloc(0), { metadata: {} })) if (++n === 3) break;
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toContain("/svc.v1.S/Endless");
    ch.close();
  });

  it("refuses an answer larger than its limit", async () => {
    handler = (s) => {
      ok(s, [Buffer.alloc(2048)]);
    };
    const ch = new GrpcChannel(socket, 1024);
    await expect(ch.unary("/svc.v1.S/Big", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.RESOURCE_EXHAUSTED });
    ch.close();
  });

  it("reports a socket nobody listens on as UNAVAILABLE, naming it, and a lost connection too; the next call reconnects", async () => {
    const none = new GrpcChannel(join(dir, "nobody.sock"));
    const e = await none.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    expect((e as GrpcError).details).toMatch(/ENOENT.*nobody\.sock/);
    none.close();

    const ch = new GrpcChannel(socket);
    handler = (s) => {
      s.session?.destroy(); // the server goes away mid-call
    };
    await expect(ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE });
    handler = (s) => {
      ok(s, [Buffer.from("back")]);
    };
    expect((await ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} })).toString()).toBe("back");
    ch.close();
    await expect(ch.unary("/svc.v1.S/Get", Buffer.alloc(0), { metadata: {} })).rejects.toMatchObject({ code: GrpcStatus.UNAVAILABLE, details: "channel closed" });
  });

  it("keeps the process alive while a call is in flight, and not once it is idle", async () => {
    handler = (s) => {
      setTimeout(() => {
        ok(s, [Buffer.from("late")]);
      }, 700);
    };
    // a process whose only handle is the channel: it must wait for the answer, then exit by itself
    // (no close()) once the channel is idle
    const script = `
      import { GrpcChannel } from ${JSON.stringify(GRPC)};
      const ch = new GrpcChannel(${JSON.stringify(socket)});
      const t0 = Date.now();
      const res = await ch.unary("/svc.v1.S/Late", Buffer.alloc(0), { metadata: {} });
      process.stdout.write(res.toString() + " " + (Date.now() - t0) + "\\n");
    `;
    const t0 = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const [code] = (await once(child, "close")) as [number | null];
    clearTimeout(timer);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toMatch(/^late \d+\n$/);
    expect(Number(out.split(" ")[1])).toBeGreaterThanOrEqual(650);
    expect(Date.now() - t0).toBeLessThan(14_000); // it exited by itself, not by the kill
  });
});
