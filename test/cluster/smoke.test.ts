// Proves the environment: a real API server, controller manager and Metacontroller, and our hook
// server answering Metacontroller's sync calls (status appears on the SandboxSnapshot).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import { createNamespace, createSnapshot, snapshotObject, startE2E, waitForSnapshot, type E2E } from "../support/cluster-e2e.js";

const missing = missingClusterComponents();

describe.skipIf(missing)("cluster environment (smoke)", () => {
  let e: E2E | undefined;
  const env = (): E2E => {
    if (!e) throw new Error("environment not started");
    return e;
  };

  beforeAll(async () => {
    e = await startE2E();
  }, 300_000);

  afterAll(async () => {
    await e?.stop();
  });

  it("serves the Kubernetes API with RBAC and runs the controller manager", async () => {
    const { cluster } = env();
    const v = await cluster.kubectlAsync(["version", "-o", "json"]);
    expect(v.status, v.stderr).toBe(0);
    const version = JSON.parse(v.stdout) as { serverVersion?: { gitVersion?: string } };
    expect(version.serverVersion?.gitVersion).toMatch(/^v1\.\d+\.\d+/);
    // RBAC is on: an unprivileged service account may not list secrets.
    const can = await cluster.kubectlAsync(["auth", "can-i", "list", "secrets", "--as=system:serviceaccount:default:default"]);
    expect(can.stdout.trim()).toBe("no");
    // The controller manager runs the Job controller under its own service account (token controller works).
    await waitFor("ServiceAccount kube-system/job-controller", async () => {
      await cluster.core.readNamespacedServiceAccount({ namespace: "kube-system", name: "job-controller" });
      return true;
    });
  });

  it("Metacontroller calls our sync hook and the status appears", async () => {
    const { cluster } = env();
    await createNamespace(cluster, "smoke");
    await createSnapshot(cluster, snapshotObject("smoke", "snap-smoke", { podName: "not-there-yet" }));
    const s = await waitForSnapshot(env(), "smoke", "snap-smoke", "phase Pending", (x) => x.status?.phase === "Pending");
    expect(s.status?.conditions?.length ?? 0).toBeGreaterThan(0);
    // Metacontroller added its finalizer because the CompositeController has a finalize hook.
    expect(s.metadata?.finalizers ?? []).toContain("metacontroller.io/compositecontroller-sandbox-snapshot-controller");
  });
});
