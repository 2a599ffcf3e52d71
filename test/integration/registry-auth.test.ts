// Authentication against the real registry: htpasswd (Basic) and token auth (Bearer, from a token
// issuer started by the test bed), credentials from docker config files, and no credential ever in
// an error message or a log line.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RegistryClient, type RegistryLogger } from "../../src/registry/index.js";
import { missingComponents } from "../support/components.js";
import { makeTestLayer, pushTestImage } from "../support/registry-image.js";
import { rejection, startRegistry, type TestRegistry, writeDockerConfig } from "../support/registry.js";

const missing = missingComponents(["docker-registry", "htpasswd", "openssl"]);

// Recognisable secret values: none of them may appear in any message or log line.
const USER = "snapshot-pusher";
const PASSWORD = "s3cr3t-PASSWORD-xyzzy-7431";
const WRONG_PASSWORD = "wr0ng-PASSWORD-plugh-9902";
const IDENTITY_TOKEN = "idtok-REFRESH-frobozz-5518";
const b64 = (s: string): string => Buffer.from(s).toString("base64");
const SECRETS = [PASSWORD, WRONG_PASSWORD, IDENTITY_TOKEN, b64(`${USER}:${PASSWORD}`), b64(`${USER}:${WRONG_PASSWORD}`)];

/** A logger that records every line (debug included) as text. */
function recordingLogger(): RegistryLogger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: Record<string, unknown>, msg: string) => {
    lines.push(`${level} ${msg} ${JSON.stringify(obj)}`);
  };
  return { lines, debug: rec("debug"), info: rec("info"), warn: rec("warn") };
}

function expectNoSecret(texts: readonly string[], extra: readonly string[] = []): void {
  for (const t of texts) {
    for (const s of [...SECRETS, ...extra]) expect(t, "a credential leaked").not.toContain(s);
    expect(t).not.toMatch(/authorization:|Bearer\s+ey|Basic\s+[A-Za-z0-9+/=]{8,}/i);
  }
}

describe.skipIf(missing)("htpasswd (Basic) auth", () => {
  let reg: TestRegistry;
  let dir: string;
  beforeAll(async () => {
    reg = await startRegistry({ htpasswd: { [USER]: PASSWORD } });
    dir = mkdtempSync(join(tmpdir(), "registry-auth-"));
  });
  afterAll(async () => {
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("pushes and deletes with the right password from a docker config file", async () => {
    const configDir = writeDockerConfig(mkdtempSync(join(dir, "cfg-")), `https://${reg.url}/v1/`, { username: USER, password: PASSWORD, authOnly: true });
    const log = recordingLogger();
    const client = await RegistryClient.create({ registry: reg.url, insecure: true, dockerConfigPath: configDir, logger: log });
    await client.ping();
    const img = await pushTestImage(client, "basic/ok", { layers: 2 });
    expect(await client.resolveTag("basic/ok", "latest")).toBe(img.digest);
    expect(await client.deleteManifest("basic/ok", img.digest)).toBe("deleted");
    expectNoSecret(log.lines);
  });

  it("fails with kind unauthorized for a wrong password, naming registry and repository but no secret", async () => {
    const log = recordingLogger();
    const client = reg.client({ credentials: { username: USER, password: WRONG_PASSWORD }, logger: log });
    const layer = await makeTestLayer();
    const e = await rejection(client.pushBlob("basic/wrong", { bytes: layer.bytes }));
    expect(e.kind).toBe("unauthorized");
    expect(e.status).toBe(401);
    expect(e.message).toContain(`${reg.url}/basic/wrong`);
    expectNoSecret([e.message, String(e.stack), JSON.stringify(e), ...log.lines]);
  });

  it("keeps credentials out of every error and log line, also while the registry is down", async () => {
    const log = recordingLogger();
    const client = reg.client({ credentials: { username: USER, password: PASSWORD }, logger: log, retry: { maxAttempts: 2, initialDelayMs: 10, maxDelayMs: 20 } });
    const layer = await makeTestLayer();
    await client.pushBlob("basic/leak", { bytes: layer.bytes });
    const errors: string[] = [];
    await reg.stop();
    try {
      const calls = [
        () => client.ping(),
        () => client.pushBlob("basic/leak2", { bytes: layer.bytes }),
        () => client.deleteManifest("basic/leak", layer.digest),
        () => client.getManifest("basic/leak", "nope"),
      ];
      for (const call of calls) {
        const e = await rejection(call());
        expect(e.kind).toBe("unavailable");
        errors.push(e.message, String(e.stack));
      }
    } finally {
      await reg.start();
    }
    errors.push((await rejection(client.getManifest("basic/leak", "nope"))).message);
    expect(log.lines.length).toBeGreaterThan(0);
    expectNoSecret([...errors, ...log.lines]);
  });

  it("fails with kind unauthorized when no credentials are configured", async () => {
    const client = reg.client();
    const e = await rejection(client.ping());
    expect(e.kind).toBe("unauthorized");
    expect(e.message).toMatch(/no credentials/);
  });
});

describe.skipIf(missing)("token (Bearer) auth", () => {
  let reg: TestRegistry;
  let dir: string;
  beforeAll(async () => {
    reg = await startRegistry({ token: { users: { [USER]: PASSWORD, reader: PASSWORD }, pullOnlyUsers: ["reader"], identityTokens: { [IDENTITY_TOKEN]: USER }, ttlSeconds: 300 } });
    dir = mkdtempSync(join(tmpdir(), "registry-token-"));
  });
  afterAll(async () => {
    await reg.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const issuer = (): NonNullable<TestRegistry["issuer"]> => {
    if (reg.issuer === undefined) throw new Error("token issuer not started");
    return reg.issuer;
  };

  it("obtains a token with Basic credentials at the realm, caches it per scope and pushes an image", async () => {
    const log = recordingLogger();
    const configDir = writeDockerConfig(mkdtempSync(join(dir, "cfg-")), reg.url, { username: USER, password: PASSWORD });
    const client = await RegistryClient.create({ registry: reg.url, insecure: true, dockerConfigPath: configDir, logger: log });
    const before = issuer().requests.length;
    const img = await pushTestImage(client, "bearer/ok", { layers: 3 });
    const m = await client.getManifest("bearer/ok", "latest");
    expect(m.digest).toBe(img.digest);
    const seen = issuer().requests.slice(before);
    expect(seen.every((r) => r.status === 200 && r.method === "GET" && r.user === USER)).toBe(true);
    // One token for push+pull on the repository serves the whole image push (plus the pull scope's own).
    expect(seen.length).toBeLessThanOrEqual(3);
    expect(seen.some((r) => r.scopes.includes("repository:bearer/ok:pull,push"))).toBe(true);
    expect(await client.deleteManifest("bearer/ok", img.digest)).toBe("deleted");
    expect(issuer().requests.at(-1)?.scopes).toContain("repository:bearer/ok:delete");
    expectNoSecret(log.lines, issuer().issuedTokens);
  });

  it("fails with kind unauthorized when the token service refuses a wrong password", async () => {
    const log = recordingLogger();
    const client = reg.client({ credentials: { username: USER, password: WRONG_PASSWORD }, logger: log });
    const layer = await makeTestLayer();
    const e = await rejection(client.pushBlob("bearer/wrong", { bytes: layer.bytes }));
    expect(e.kind).toBe("unauthorized");
    expect(e.message).toContain("token service");
    expect(e.message).toContain(`${reg.url}/bearer/wrong`);
    expect(issuer().requests.at(-1)).toMatchObject({ status: 401 });
    expectNoSecret([e.message, String(e.stack), ...log.lines], issuer().issuedTokens);
  });

  it("refreshes a token the registry refuses as expired, and carries on", async () => {
    const log = recordingLogger();
    const client = reg.client({ credentials: { username: USER, password: PASSWORD }, logger: log });
    await pushTestImage(client, "bearer/expiry", { layers: 1, tag: "one" });
    // The next token is issued already expired while announcing expires_in=300: only the
    // registry's 401 tells the client, which must fetch a fresh one and retry.
    issuer().issueExpired(1);
    const before = issuer().requests.length;
    const img = await pushTestImage(reg.client({ credentials: { username: USER, password: PASSWORD }, logger: log }), "bearer/expiry", { layers: 1, tag: "two" });
    expect(await client.resolveTag("bearer/expiry", "two")).toBe(img.digest);
    expect(issuer().requests.length - before).toBeGreaterThanOrEqual(2);
    expectNoSecret(log.lines, issuer().issuedTokens);
  });

  it("exchanges an identity token with the OAuth2 refresh_token grant", async () => {
    const log = recordingLogger();
    const configDir = writeDockerConfig(mkdtempSync(join(dir, "cfg-")), reg.url, { identitytoken: IDENTITY_TOKEN });
    const client = await RegistryClient.create({ registry: reg.url, insecure: true, dockerConfigPath: configDir, logger: log });
    const before = issuer().requests.length;
    const img = await pushTestImage(client, "bearer/identity", { layers: 1 });
    expect(await client.resolveTag("bearer/identity", "latest")).toBe(img.digest);
    const seen = issuer().requests.slice(before);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((r) => r.method === "POST" && r.grantType === "refresh_token" && r.status === 200)).toBe(true);
    expectNoSecret(log.lines, issuer().issuedTokens);
  });

  it("reports kind denied when valid credentials lack the rights (insufficient_scope)", async () => {
    const writer = reg.client({ credentials: { username: USER, password: PASSWORD } });
    const img = await pushTestImage(writer, "bearer/readonly", { layers: 1 });
    const reader = reg.client({ credentials: { username: "reader", password: PASSWORD } });
    expect(await reader.resolveTag("bearer/readonly", "latest")).toBe(img.digest);
    const e = await rejection(reader.deleteManifest("bearer/readonly", img.digest));
    expect(e.kind).toBe("denied");
    expect(e.message).toContain("repository:bearer/readonly:delete");
    const layer = await makeTestLayer();
    expect((await rejection(reader.pushBlob("bearer/readonly", { bytes: layer.bytes }))).kind).toBe("denied");
  });

  it("fails with kind unauthorized for anonymous access", async () => {
    const e = await rejection(reg.client().resolveTag("bearer/ok", "latest"));
    expect(e.kind).toBe("unauthorized");
  });
});

describe.skipIf(missing)("token cache expiry", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ token: { users: { [USER]: PASSWORD }, ttlSeconds: 2 } });
  });
  afterAll(async () => {
    await reg.close();
  });

  it("reuses a cached token until shortly before expires_in, then fetches a new one without waiting for a 401", async () => {
    const issuer = reg.issuer;
    if (issuer === undefined) throw new Error("token issuer not started");
    const client = reg.client({ credentials: { username: USER, password: PASSWORD } });
    await pushTestImage(client, "cache/repo", { layers: 1 });
    const n0 = issuer.requests.length;
    await client.resolveTag("cache/repo", "latest");
    const n1 = issuer.requests.length;
    await client.resolveTag("cache/repo", "latest");
    expect(issuer.requests.length).toBe(n1); // cached
    expect(n1).toBe(n0); // the push already holds a pull-scope token (from its blob HEADs)
    await new Promise((r) => setTimeout(r, 2100));
    // The registry would still accept the old token (60 s clock-skew leeway), so a new token request
    // shows the client renewed it by itself.
    await client.resolveTag("cache/repo", "latest");
    expect(issuer.requests.length).toBe(n1 + 1);
  });
});
