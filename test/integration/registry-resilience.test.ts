// Failure handling: an outage of the real registry in the middle of an upload, retries with backoff
// on 5xx/429 (Retry-After honoured) and never on other 4xx, timeouts and caller budgets, aborts,
// and memory that does not grow with blob size.
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { RegistryClient, sha256Digest } from "../../src/registry/index.js";
import { missingComponents } from "../support/components.js";
import { rejection, startRegistry, type TestRegistry } from "../support/registry.js";

const missing = missingComponents(["docker-registry"]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A stream of `data` in 64 KiB pieces, pausing between pieces; calls `at(bytesSoFar)` per piece. */
function slowStream(data: Buffer, pauseMs: number, at: (sent: number) => void): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for (let off = 0; off < data.byteLength; off += 65_536) {
      at(off);
      await sleep(pauseMs);
      yield data.subarray(off, Math.min(off + 65_536, data.byteLength));
    }
  }
  return Readable.from(gen());
}

describe.skipIf(missing)("an outage of the real registry during an upload", () => {
  let reg: TestRegistry;
  let scratch: string;
  beforeAll(async () => {
    reg = await startRegistry();
    scratch = mkdtempSync(join(tmpdir(), "registry-outage-"));
  });
  afterAll(async () => {
    await reg.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  const outage = (): Promise<void> =>
    (async () => {
      await reg.stop();
      await sleep(800);
      await reg.start();
    })();

  it("restarts a monolithic upload from a fresh stream after the registry comes back", async () => {
    const data = randomBytes(2 * 1024 * 1024);
    const digest = sha256Digest(data);
    let opened = 0;
    let down: Promise<void> | undefined;
    const warnings: string[] = [];
    const client = reg.client({
      retry: { maxAttempts: 8, initialDelayMs: 200, maxDelayMs: 1500 },
      logger: { debug: () => undefined, info: () => undefined, warn: (_o, m) => warnings.push(m) },
    });
    const r = await client.pushBlob(
      "outage/mono",
      {
        open: () => {
          opened++;
          const first = opened === 1;
          return slowStream(data, first ? 5 : 0, (sent) => {
            if (first && sent === 512 * 1024) down = outage();
          });
        },
      },
      { digest },
    );
    await down;
    expect(r).toEqual({ digest, size: data.byteLength, outcome: "uploaded" });
    expect(opened).toBeGreaterThanOrEqual(2);
    expect(warnings.some((w) => w.includes("restarting"))).toBe(true);
    expect(await client.statBlob("outage/mono", digest)).toEqual({ digest, size: data.byteLength });
  });

  it("finishes a chunked file upload when the registry is stopped while it runs", async () => {
    const data = randomBytes(1_500_000);
    const file = join(scratch, "outage.bin");
    writeFileSync(file, data);
    let down: Promise<void> | undefined;
    let patches = 0;
    const client = reg.client({
      retry: { maxAttempts: 8, initialDelayMs: 200, maxDelayMs: 1500 },
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: () => undefined,
      },
    });
    // Stop the registry once, about 10 ms after the upload started (early chunks are on their way).
    const timer = setInterval(() => {
      patches++;
      if (patches === 2 && down === undefined) down = outage();
    }, 5);
    try {
      const r = await client.pushBlob("outage/chunked", { path: file }, { chunkSize: 100_000 });
      expect(r).toEqual({ digest: sha256Digest(data), size: data.byteLength, outcome: "uploaded" });
    } finally {
      clearInterval(timer);
      await down;
    }
  });
});

/** A scripted HTTP server standing in for a misbehaving registry. */
interface FakeRegistry {
  host: string;
  hits: { method: string; url: string; at: number }[];
  close(): Promise<void>;
}

async function fakeRegistry(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<FakeRegistry> {
  return fakeRegistryRaw((req, res, n) => {
    req.resume();
    handler(req, res, n);
  });
}

/** Like fakeRegistry, but the handler reads the request body itself. */
async function fakeRegistryRaw(handler: (req: IncomingMessage, res: ServerResponse, n: number) => void): Promise<FakeRegistry> {
  const hits: FakeRegistry["hits"] = [];
  const server: Server = createServer((req, res) => {
    hits.push({ method: req.method ?? "", url: req.url ?? "", at: Date.now() });
    handler(req, res, hits.length);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => {
    r();
  }));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => {
          r();
        });
      }),
  };
}

const errorBody = (code: string, message: string): string => JSON.stringify({ errors: [{ code, message }] });

describe("retries, timeouts and budgets (scripted server)", () => {
  let fake: FakeRegistry | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  const client = (host: string, extra: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient =>
    new RegistryClient({ registry: host, insecure: true, timeoutMs: 2000, retry: { maxAttempts: 4, initialDelayMs: 20, maxDelayMs: 2000 }, ...extra });

  it("retries 503 answers with backoff and then succeeds", async () => {
    fake = await fakeRegistry((_req, res, n) => {
      if (n < 3) {
        res.writeHead(503, { "content-type": "application/json" }).end(errorBody("UNAVAILABLE", "busy"));
        return;
      }
      res.writeHead(200, { "docker-distribution-api-version": "registry/2.0" }).end("{}");
    });
    expect(await client(fake.host).ping()).toEqual({ apiVersion: "registry/2.0" });
    expect(fake.hits).toHaveLength(3);
  });

  it("honours Retry-After on 429", async () => {
    fake = await fakeRegistry((_req, res, n) => {
      if (n === 1) {
        res.writeHead(429, { "retry-after": "1" }).end(errorBody("TOOMANYREQUESTS", "slow down"));
        return;
      }
      res.writeHead(200).end("{}");
    });
    await client(fake.host).ping();
    expect(fake.hits).toHaveLength(2);
    const [first, second] = fake.hits;
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it("gives up after the configured attempts with kind unavailable", async () => {
    fake = await fakeRegistry((_req, res) => {
      res.writeHead(502).end("bad gateway");
    });
    const e = await rejection(client(fake.host).resolveTag("a/b", "t"));
    expect(e.kind).toBe("unavailable");
    expect(e.status).toBe(502);
    expect(e.attempts).toBe(4);
    expect(e.message).toContain(`${fake.host}/a/b`);
    expect(e.message).toContain("manifest-head");
    expect(fake.hits).toHaveLength(4);
  });

  it("never retries other 4xx answers", async () => {
    fake = await fakeRegistry((_req, res) => {
      res.writeHead(400, { "content-type": "application/json" }).end(errorBody("MANIFEST_INVALID", "manifest invalid"));
    });
    const e = await rejection(client(fake.host).putManifest("a/b", "t", { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "x", digest: sha256Digest("c"), size: 1 }, layers: [] }));
    expect(e.kind).toBe("invalid");
    expect(e.code).toBe("MANIFEST_INVALID");
    expect(fake.hits).toHaveLength(1);
  });

  it("retries connection errors (nothing listening) and reports unavailable", async () => {
    fake = await fakeRegistry((_req, res) => res.end());
    const host = fake.host;
    await fake.close();
    fake = undefined;
    const e = await rejection(client(host, { retry: { maxAttempts: 3, initialDelayMs: 10, maxDelayMs: 50 } }).ping());
    expect(e.kind).toBe("unavailable");
    expect(e.attempts).toBe(3);
    expect(e.message).toMatch(/ECONNREFUSED/);
  });

  it("bounds a call by the caller's budget even when the registry never answers", async () => {
    fake = await fakeRegistry(() => {
      // never answer
    });
    const t0 = Date.now();
    const e = await rejection(client(fake.host, { timeoutMs: 60_000 }).headManifest("a/b", "t", { budgetMs: 400 }));
    expect(e.kind).toBe("timeout");
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it("times out an attempt that makes no progress and retries it", async () => {
    fake = await fakeRegistry((_req, res, n) => {
      if (n === 1) return; // hang
      res.writeHead(200).end("{}");
    });
    await client(fake.host, { timeoutMs: 200 }).ping();
    expect(fake.hits).toHaveLength(2);
  });

  it("stops at once when the caller aborts", async () => {
    fake = await fakeRegistry(() => {
      // never answer
    });
    const ac = new AbortController();
    setTimeout(() => {
      ac.abort();
    }, 100);
    const e = await rejection(client(fake.host).ping({ signal: ac.signal }));
    expect(e.kind).toBe("aborted");
    expect(fake.hits).toHaveLength(1);
  });

  it("sends HTTPS unless insecure is explicitly true", async () => {
    fake = await fakeRegistry((_req, res) => res.writeHead(200).end("{}"));
    const e = await rejection(new RegistryClient({ registry: fake.host, retry: { maxAttempts: 1 } }).ping());
    expect(e.kind).toBe("unavailable");
    expect(fake.hits).toHaveLength(0); // a TLS handshake is not an HTTP request
  });
});

describe("memory during a large upload", () => {
  let fake: FakeRegistry | undefined;
  afterAll(async () => {
    await fake?.close();
  });

  it("streams with backpressure: bytes read from the source never run far ahead of what the registry consumed", async () => {
    // A registry that reads the upload body slowly. If the client buffered the blob, the source
    // would be drained at once; with streaming it can only be a few socket buffers ahead.
    const total = 64 * 1024 * 1024;
    let consumed = 0;
    let produced = 0;
    let maxAhead = 0;
    fake = await fakeRegistryRaw((req, res) => {
      if (req.method === "HEAD") {
        req.resume();
        res.writeHead(404).end();
        return;
      }
      if (req.method === "POST") {
        req.resume();
        res.writeHead(202, { location: "/v2/memory/big/blobs/uploads/u1?_state=x" }).end();
        return;
      }
      req.on("data", (c: Buffer) => {
        consumed += c.byteLength;
        req.pause();
        setTimeout(() => req.resume(), 1);
      });
      req.on("end", () => {
        const digest = new URL(req.url ?? "/", "http://x").searchParams.get("digest") ?? "";
        res.writeHead(201, { "docker-content-digest": digest }).end();
      });
    });
    const piece = randomBytes(256 * 1024);
    function* gen(): Generator<Buffer> {
      for (let sent = 0; sent < total; sent += piece.byteLength) {
        produced += piece.byteLength;
        maxAhead = Math.max(maxAhead, produced - consumed);
        yield Buffer.from(piece);
      }
    }
    const digest = sha256Digest(Buffer.concat(Array.from({ length: total / piece.byteLength }, () => piece)));
    const client = new RegistryClient({ registry: fake.host, insecure: true, retry: { maxAttempts: 1 } });
    const r = await client.pushBlob("memory/big", { open: () => Readable.from(gen()) }, { digest });
    expect(r).toEqual({ digest, size: total, outcome: "uploaded" });
    expect(consumed).toBe(total);
    expect(maxAhead).toBeLessThan(16 * 1024 * 1024);
  });
});
