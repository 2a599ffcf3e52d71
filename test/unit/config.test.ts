import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseByteQuantity } from "../../src/config/config.js";

describe("configuration", () => {
  it("has defaults that work with no environment at all", () => {
    const c = loadConfig({});
    expect(c.hookListen).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(c.metricsListen).toEqual({ host: "0.0.0.0", port: 9090 });
    expect(c.registry).toBe("localhost:5000/snapshots");
    expect(c.repositoryTemplate).toBe("{registry}/{namespace}/{source}/{container}");
    expect(c.sharedRepositories).toBe(false);
    expect(c.imageRecheckSeconds).toBe(86400);
    expect(c.registryInsecure).toBe(false);
    expect(c.pushSecret).toBeUndefined();
    expect(c.commitJobDeadlineSeconds).toBe(600);
    expect(c.scratchLimitBytes).toBe(10 * 1024 ** 3);
    expect(c.compression).toBe("gzip");
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("reads flags that mirror the environment, flags winning", () => {
    const c = loadConfig({ LOG_LEVEL: "warn" }, ["--log-level=debug", "--snapshot-registry", "r.example.com/x"]);
    expect(c.logLevel).toBe("debug");
    expect(c.registry).toBe("r.example.com/x");
  });

  it.each([
    ["HOOK_LISTEN_ADDRESS", "8080"],
    ["METRICS_LISTEN_ADDRESS", "0.0.0.0:99999"],
    ["SNAPSHOT_REGISTRY", "https://r.example.com"],
    ["SNAPSHOT_REGISTRY", "r.example.com/Upper"],
    ["SNAPSHOT_REPOSITORY_TEMPLATE", "{registry}/{source}"],
    ["SNAPSHOT_REPOSITORY_TEMPLATE", "{registry}/{source}-{container}"],
    ["SNAPSHOT_SHARED_REPOSITORIES", "yes"],
    ["IMAGE_RECHECK_SECONDS", "-5"],
    ["IMAGE_RECHECK_SECONDS", "1d"],
    ["SNAPSHOT_REPOSITORY_TEMPLATE", "{registry}/{sauce}-{container}"],
    ["SNAPSHOT_REGISTRY_INSECURE", "yes"],
    ["SNAPSHOT_PUSH_SECRET", "Not_A_Name"],
    ["COMMIT_JOB_DEADLINE_SECONDS", "ten"],
    ["COMMIT_JOB_DEADLINE_SECONDS", "0"],
    ["COMMIT_JOB_CPU", "lots"],
    ["COMMIT_JOB_MEMORY", "512MB"],
    ["CONTAINERD_SOCKET", "run/containerd.sock"],
    ["SNAPSHOT_COMPRESSION", "lz4"],
    ["SNAPSHOT_MAX_FREEZE_SECONDS", "-1"],
    ["SNAPSHOT_SCRATCH_LIMIT", "huge"],
    ["SOURCE_WAIT_SECONDS", "1.5"],
    ["CLEANUP_DEADLINE_SECONDS", ""],
    ["LOG_LEVEL", "verbose"],
    ["REGISTRY_CLEANUP_DOCKER_CONFIG", "relative/config.json"],
  ])("rejects %s=%j with an error naming the setting", (setting, value) => {
    let err: unknown;
    try {
      loadConfig({ [setting]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe(setting);
    expect((err as Error).message).toContain(`invalid setting ${setting}`);
  });

  it("refuses a repository template without {namespace} unless repositories are declared shared across namespaces", () => {
    const err = (() => {
      try {
        loadConfig({ SNAPSHOT_REPOSITORY_TEMPLATE: "{registry}/{source}-{container}" });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).setting).toBe("SNAPSHOT_REPOSITORY_TEMPLATE");
    expect((err as Error).message).toMatch(/no \{namespace\}.*SNAPSHOT_SHARED_REPOSITORIES=true/);
    // OpenSandbox's layout stays available, explicitly.
    const shared = loadConfig({ SNAPSHOT_REPOSITORY_TEMPLATE: "{registry}/{source}-{container}", SNAPSHOT_SHARED_REPOSITORIES: "true" });
    expect(shared.repositoryTemplate).toBe("{registry}/{source}-{container}");
    expect(shared.sharedRepositories).toBe(true);
  });

  it("turns the periodic image check off with IMAGE_RECHECK_SECONDS=0", () => {
    expect(loadConfig({ IMAGE_RECHECK_SECONDS: "0" }).imageRecheckSeconds).toBe(0);
  });

  it("rejects a freeze watchdog that outlives the commit Job", () => {
    expect(() => loadConfig({ SNAPSHOT_MAX_FREEZE_SECONDS: "700" })).toThrow(/SNAPSHOT_MAX_FREEZE_SECONDS/);
  });

  it("rejects unknown flags, naming them", () => {
    expect(() => loadConfig({}, ["--registry=x"])).toThrow(/--registry=x: unknown flag/);
  });

  it.each([
    ["10Gi", 10 * 1024 ** 3],
    ["512Mi", 512 * 1024 ** 2],
    ["500M", 500e6],
    ["1073741824", 1073741824],
  ])("parses byte quantity %s", (q, bytes) => {
    expect(parseByteQuantity("X", q)).toBe(bytes);
  });
});
