import { describe, expect, it } from "vitest";
import { Authenticator } from "../../src/registry/auth.js";
import { RegistryError, Scrubber } from "../../src/registry/errors.js";
import { scrubbingLogger } from "../../src/registry/log.js";
import { backoffDelay, DEFAULT_RETRY_POLICY, parseRetryAfter, retryPolicy } from "../../src/registry/retry.js";
import { parseErrorBody } from "../../src/registry/transport.js";

describe("RegistryError", () => {
  it("names the operation, registry, repository, status and registry error code", () => {
    const e = new RegistryError({ kind: "not-found", operation: "manifest-get", registry: "r.io:5000", repository: "a/b", status: 404, code: "MANIFEST_UNKNOWN", reason: "manifest unknown" });
    expect(e.message).toBe("registry manifest-get r.io:5000/a/b: manifest unknown (HTTP 404 MANIFEST_UNKNOWN)");
    expect(e.transient).toBe(false);
    expect(new RegistryError({ kind: "unavailable", operation: "ping", registry: "r", reason: "down", attempts: 3 }).message).toBe("registry ping r: down after 3 attempts");
  });
});

describe("Scrubber", () => {
  it("removes registered secrets, Authorization values, JWTs and secret query parameters", () => {
    const s = new Scrubber();
    s.add("hunter2-pass");
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    const out = s.scrub(`pw hunter2-pass; Authorization: Basic dXNlcjpwYXNz; Bearer abc.def; ${jwt}; ?refresh_token=zzz&password=yyy&x=1`);
    expect(out).not.toContain("hunter2-pass");
    expect(out).not.toContain("dXNlcjpwYXNz");
    expect(out).not.toContain("abc.def");
    expect(out).not.toContain(jwt);
    expect(out).not.toContain("zzz");
    expect(out).not.toContain("yyy");
    expect(out).toContain("x=1");
  });

  it("scrubs every line a wrapped logger writes, fields included", () => {
    const s = new Scrubber();
    s.add("tok-SECRET-1");
    const lines: string[] = [];
    const log = scrubbingLogger({ debug: (o, m) => lines.push(m + JSON.stringify(o)), info: () => undefined, warn: () => undefined }, s);
    log.debug({ nested: { token: "tok-SECRET-1" }, list: ["tok-SECRET-1"], err: new Error("bad tok-SECRET-1") }, "got tok-SECRET-1");
    expect(lines.join("\n")).not.toContain("tok-SECRET-1");
  });
});

describe("retry policy", () => {
  it("backs off exponentially with jitter, capped", () => {
    const p = retryPolicy({ initialDelayMs: 100, maxDelayMs: 1000, multiplier: 2 });
    expect(backoffDelay(p, 1, () => 0)).toBe(50);
    expect(backoffDelay(p, 1, () => 1)).toBe(100);
    expect(backoffDelay(p, 3, () => 1)).toBe(400);
    expect(backoffDelay(p, 10, () => 1)).toBe(1000);
    expect(backoffDelay(p, 10, () => 0)).toBe(500);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:10 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT"))).toBe(10_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it("rejects nonsensical policies", () => {
    expect(() => retryPolicy({ maxAttempts: 0 })).toThrow(RangeError);
    expect(() => retryPolicy({ initialDelayMs: 10, maxDelayMs: 5 })).toThrow(RangeError);
    expect(retryPolicy(undefined)).toEqual(DEFAULT_RETRY_POLICY);
  });
});

describe("registry error bodies", () => {
  it("takes the first error's code and message", () => {
    expect(parseErrorBody(JSON.stringify({ errors: [{ code: "DIGEST_INVALID", message: "provided digest did not match", detail: {} }] }))).toEqual({
      code: "DIGEST_INVALID",
      message: "provided digest did not match",
    });
    expect(parseErrorBody("plain text")).toEqual({ code: undefined, message: "plain text" });
    expect(parseErrorBody("")).toEqual({ code: undefined, message: undefined });
  });
});

describe("Authenticator", () => {
  const make = (insecure: boolean): Authenticator =>
    new Authenticator({
      registry: "r.io",
      insecure,
      credentials: { username: "u", password: "p4ss-SECRET" },
      scrubber: new Scrubber(),
      logger: { debug: () => undefined, info: () => undefined, warn: () => undefined },
    });
  const ctx = { operation: "ping", repository: undefined, signal: new AbortController().signal };

  it("answers Basic challenges with the configured credentials", async () => {
    const a = make(false);
    expect(await a.authorization([], ctx)).toBeUndefined();
    expect(a.unauthorized('Basic realm="r"', [], undefined)).toBe(true);
    expect(await a.authorization([], ctx)).toBe(`Basic ${Buffer.from("u:p4ss-SECRET").toString("base64")}`);
    // A refused Basic header is final.
    expect(a.unauthorized('Basic realm="r"', [], "Basic x")).toBe(false);
  });

  it("refuses to send credentials to a plain-HTTP token service unless the registry is insecure", async () => {
    const a = make(false);
    a.unauthorized('Bearer realm="http://auth.example.com/token",service="r"', [], undefined);
    const e: unknown = await a.authorization([], ctx).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RegistryError);
    expect((e as RegistryError).kind).toBe("protocol");
    expect((e as RegistryError).message).toMatch(/plain-HTTP token service/);
  });

  it("rejects a Bearer challenge without a usable realm", async () => {
    const a = make(true);
    a.unauthorized('Bearer service="r"', [], undefined);
    await expect(a.authorization([], ctx)).rejects.toMatchObject({ kind: "protocol" });
    a.unauthorized('Bearer realm="ftp://x/token"', [], undefined);
    await expect(a.authorization([], ctx)).rejects.toMatchObject({ kind: "protocol" });
  });
});
