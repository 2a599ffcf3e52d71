import { describe, expect, it } from "vitest";
import type { Pod, SandboxSnapshot } from "../../src/api/types.js";
import { COMMITTER_ENV_VARS } from "../../src/committer/config.js";
import { loadConfig } from "../../src/config/config.js";
import { commitJob } from "../../src/jobs/committer-job.js";

const cfg = loadConfig({});
const snapshot: SandboxSnapshot = {
  apiVersion: "sandbox.opensandbox.io/v1alpha1",
  kind: "SandboxSnapshot",
  metadata: { name: "snap1", namespace: "sandboxes", uid: "u1" },
  spec: { podName: "sts-0" },
};
const pod = (uid?: string): Pod => ({ apiVersion: "v1", kind: "Pod", metadata: { name: "sts-0", namespace: "sandboxes", ...(uid ? { uid } : {}) } });
const envOf = (sourcePod: Pod | undefined, sourcePodUid?: string): Record<string, string> => {
  const job = commitJob({ snapshot, podName: "sts-0", nodeName: "n1", sourcePod, sourcePodUid, targets: [{ containerName: "c", imageUri: "r/x:snap-1" }] }, cfg) as unknown as {
    spec: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } };
  };
  return Object.fromEntries((job.spec.template.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]));
};

describe("commit Job: the source pod's UID", () => {
  it("passes the source pod's UID to the committer as SNAPSHOT_POD_UID, a variable the committer reads", () => {
    expect(envOf(pod("pod-uid-1")).SNAPSHOT_POD_UID).toBe("pod-uid-1");
    expect(COMMITTER_ENV_VARS).toContain("SNAPSHOT_POD_UID");
  });
  it("prefers the UID recorded when the snapshot started over the pod observed now", () => {
    expect(envOf(pod("recreated"), "original").SNAPSHOT_POD_UID).toBe("original");
  });
  it("leaves it out when no UID is known (the committer then matches by name, as OpenSandbox's form does)", () => {
    expect(envOf(undefined)).not.toHaveProperty("SNAPSHOT_POD_UID");
    expect(envOf(pod())).not.toHaveProperty("SNAPSHOT_POD_UID");
  });
});
