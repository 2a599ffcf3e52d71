import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { credentialsFor, DockerConfigError, loadDockerConfig, normalizeRegistryHost, parseDockerConfig } from "../../src/registry/docker-config.js";

const b64 = (s: string): string => Buffer.from(s).toString("base64");

describe("docker config parsing", () => {
  it("reads auth (base64 user:password, password may contain colons), username/password and identity tokens", () => {
    const cfg = parseDockerConfig(
      JSON.stringify({
        auths: {
          "reg.example.com": { auth: b64("alice:pa:ss") },
          "https://other.example.com/v1/": { username: "bob", password: "pw" },
          "token.example.com:5000": { identitytoken: "id-token" },
        },
      }),
    );
    expect(credentialsFor(cfg, "reg.example.com")).toMatchObject({ username: "alice", password: "pa:ss" });
    expect(credentialsFor(cfg, "other.example.com")).toMatchObject({ username: "bob", password: "pw" });
    expect(credentialsFor(cfg, "token.example.com:5000")).toMatchObject({ identityToken: "id-token" });
    expect(credentialsFor(cfg, "token.example.com")).toBeUndefined();
    expect(credentialsFor(cfg, "unknown.example.com")).toBeUndefined();
  });

  it("normalises keys: scheme, /v1/ and /v2/ suffixes, case, Docker Hub aliases", () => {
    expect(normalizeRegistryHost("https://Reg.Example.com/v1/")).toBe("reg.example.com");
    expect(normalizeRegistryHost("http://localhost:5000/v2/")).toBe("localhost:5000");
    expect(normalizeRegistryHost("https://index.docker.io/v1/")).toBe("index.docker.io");
    expect(normalizeRegistryHost("docker.io")).toBe("index.docker.io");
    expect(normalizeRegistryHost("registry-1.docker.io")).toBe("index.docker.io");
  });

  it("prefers an exact host key over an https:// duplicate", () => {
    const cfg = parseDockerConfig(JSON.stringify({ auths: { "r.io": { username: "exact", password: "1" }, "https://r.io": { username: "prefixed", password: "2" } } }));
    expect(credentialsFor(cfg, "r.io")?.username).toBe("exact");
  });

  it("accepts a config without auths (credential helpers only) and records the helper hosts", () => {
    const cfg = parseDockerConfig(JSON.stringify({ credsStore: "desktop", credHelpers: { "gcr.io": "gcloud" } }));
    expect(cfg.auths.size).toBe(0);
    expect(cfg.credsStore).toBe("desktop");
    expect([...cfg.helperHosts]).toEqual(["gcr.io"]);
  });

  it.each([
    ["{not json", /not valid JSON/],
    ["[]", /top level/],
    [JSON.stringify({ auths: [] }), /auths must be an object/],
    [JSON.stringify({ auths: { r: "x" } }), /auths\["r"\] must be an object/],
    [JSON.stringify({ auths: { r: { auth: b64("nocolon") } } }), /base64 of "username:password"/],
    [JSON.stringify({ auths: { r: { password: 5 } } }), /password must be a string/],
  ])("rejects %s with a message naming the field", (text, why) => {
    expect(() => parseDockerConfig(text, "/cfg.json")).toThrow(DockerConfigError);
    expect(() => parseDockerConfig(text, "/cfg.json")).toThrow(why);
  });

  it("fails only with DockerConfigError on arbitrary JSON", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (auths, entry) => {
        for (const doc of [auths, { auths }, { auths: { "r.io": entry } }]) {
          try {
            parseDockerConfig(JSON.stringify(doc));
          } catch (e) {
            expect(e).toBeInstanceOf(DockerConfigError);
          }
        }
      }),
    );
  });

  it("never quotes the file content in a parse error (it holds secrets)", () => {
    try {
      parseDockerConfig('{"auths":{"r":{"password":"hunter2-SECRET"}', "/cfg.json");
      expect.unreachable();
    } catch (e) {
      expect(String(e)).not.toContain("hunter2-SECRET");
    }
  });
});

describe("loadDockerConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "docker-config-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("reads config.json from a $DOCKER_CONFIG directory or a file path", async () => {
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { "r.io": { username: "u", password: "p" } } }));
    expect(credentialsFor(await loadDockerConfig(dir), "r.io")?.username).toBe("u");
    expect(credentialsFor(await loadDockerConfig(join(dir, "config.json")), "r.io")?.username).toBe("u");
  });

  it("treats a missing file as no credentials", async () => {
    expect(await loadDockerConfig(join(dir, "absent"))).toBeUndefined();
    expect(await loadDockerConfig(join(dir, "absent", "config.json"))).toBeUndefined();
  });
});
