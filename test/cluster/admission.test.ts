// The admission policies of deploy/ (components/admission) on a real API server with the real Job
// controller: our commit Job, created as Metacontroller's service account, is admitted and the Job
// controller's pod for it too; privileged sandbox pods and look-alike Jobs are rejected.
import { fileURLToPath } from "node:url";
import type { KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import { commitJob, unpauseJob } from "../../src/jobs/committer-job.js";
import { LABEL_PRIVILEGED, LABEL_SNAPSHOT_NAME } from "../../src/reconcile/names.js";
import type { Job, SandboxSnapshot } from "../../src/api/types.js";
import { missingClusterComponents, startCluster, waitFor, type Cluster } from "../support/cluster.js";
import { GROUP, SNAPSHOTS, SNAPSHOT_CRD, VERSION, plain, snapshotObject, type Snapshot } from "../support/cluster-e2e.js";

const missing = missingClusterComponents();
const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const NS = "sandboxes";
const OTHER_NS = "not-a-sandbox-namespace";
const METACONTROLLER = "system:serviceaccount:metacontroller:metacontroller";
const INSTALLED_KINDS = new Set(["Namespace", "CustomResourceDefinition", "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

describe.skipIf(missing)("admission policies for sandbox namespaces (real API server)", () => {
  let cluster: Cluster | undefined;
  let config: ControllerConfig;
  let snapshot: Snapshot;
  const c = (): Cluster => {
    if (!cluster) throw new Error("cluster not started");
    return cluster;
  };

  /** Creates an object with kubectl, as `as` (impersonated) or as the admin. */
  const create = (obj: object, as?: string, namespace = NS): Result =>
    c().kubectl(["create", "-n", namespace, "-f", "-", ...(as !== undefined ? [`--as=${as}`] : [])], { input: JSON.stringify(obj) });

  const privilegedPod = (name: string, extra: Record<string, unknown> = {}): object =>
    plain({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name },
      spec: {
        containers: [{ name: "sandbox", image: "example.com/sandbox:1", securityContext: { privileged: true } }],
        ...extra,
      },
    });

  const ourJob = (kind: "commit" | "unpause", snap: Snapshot = snapshot): Job => {
    const s = snap as unknown as SandboxSnapshot;
    const input = { snapshot: s, podName: "sbx-0", nodeName: "node-a", sourcePod: undefined };
    const job =
      kind === "commit"
        ? commitJob({ ...input, targets: [{ containerName: "sandbox", imageUri: "registry.example.com/snapshots/sbx-sandbox:snap-1" }] }, config)
        : unpauseJob({ ...input, containers: ["sandbox"] }, config);
    // As Metacontroller sends it: the SandboxSnapshot as controller owner.
    return {
      ...job,
      metadata: {
        ...job.metadata,
        ownerReferences: [
          { apiVersion: `${GROUP}/${VERSION}`, kind: "SandboxSnapshot", name: s.metadata.name ?? "", uid: s.metadata.uid ?? "", controller: true, blockOwnerDeletion: true },
        ],
      },
    };
  };

  beforeAll(async () => {
    cluster = await startCluster({ metacontroller: false });
    const rendered = c().kubectl(["kustomize", DEPLOY]);
    expect(rendered.status, rendered.stderr).toBe(0);
    const objs = parseAllDocuments(rendered.stdout)
      .map((d) => d.toJS() as KubernetesObject)
      .filter((o) => INSTALLED_KINDS.has(o.kind ?? ""));
    const settings = objs.find((o) => o.kind === "ConfigMap" && o.metadata?.name?.startsWith("sandbox-snapshot-controller-config-")) as unknown as {
      data: Record<string, string>;
    };
    config = loadConfig(settings.data);
    // The CRD first (established), then the rest as `kubectl apply` would.
    const applied = c().kubectl(["apply", "--server-side", "--validate=strict", "-f", "-"], {
      input: objs.filter((o) => o.kind === "CustomResourceDefinition" || o.kind === "Namespace").map((o) => `---\n${stringify(o)}`).join(""),
    });
    expect(applied.status, applied.stderr).toBe(0);
    await c().waitForCrds([SNAPSHOT_CRD]);
    const rest = c().kubectl(["apply", "--server-side", "--validate=strict", "-f", "-"], {
      input: objs.filter((o) => o.kind !== "CustomResourceDefinition" && o.kind !== "Namespace").map((o) => `---\n${stringify(o)}`).join(""),
    });
    expect(rest.status, rest.stderr).toBe(0);

    for (const [name, labels] of [
      [NS, { "sandbox.opensandbox.io/sandbox-namespace": "true" }],
      [OTHER_NS, {}],
    ] as const) {
      await c().core.createNamespace({ body: plain({ metadata: { name, labels } }) });
    }
    // Metacontroller's identity in a real cluster, with the rights its upstream install has.
    await c().objects.create(
      plain<KubernetesObject>({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: "metacontroller-test" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
        subjects: [{ kind: "ServiceAccount", name: "metacontroller", namespace: "metacontroller" }],
      }),
    );
    snapshot = (await c().custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: SNAPSHOTS,
      body: snapshotObject(NS, "snap1", { podName: "sbx-0" }),
    })) as Snapshot;

    // Policies take effect once the API server has loaded them and their parameters.
    await waitFor(
      "admission policies enforced",
      () => {
        const r = create(privilegedPod(`probe-${String(Date.now())}`));
        return Promise.resolve(r.status !== 0 && r.stderr.includes("ValidatingAdmissionPolicy") ? true : undefined);
      },
      60_000,
      500,
    );
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it("admits the commit Job created by Metacontroller, and the Job controller's privileged pod for it", async () => {
    const r = create(ourJob("commit"), METACONTROLLER);
    expect(r.status, r.stderr).toBe(0);
    const pod = await waitFor(
      "the commit Job's pod",
      async () => {
        const pods = await c().core.listNamespacedPod({ namespace: NS, labelSelector: "job-name=snap1-commit" });
        return pods.items[0];
      },
      60_000,
      250,
    );
    expect(pod.spec?.containers[0]?.securityContext?.privileged).toBe(true);
    expect(pod.spec?.containers[0]?.image).toBe(config.committerImage);
    expect(pod.metadata?.labels?.[LABEL_SNAPSHOT_NAME]).toBe("snap1");
    expect(pod.metadata?.labels?.[LABEL_PRIVILEGED]).toBe("true");
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "Job", name: "snap1-commit", controller: true });
  });

  it("admits the unpause Job too", () => {
    const r = create(ourJob("unpause"), METACONTROLLER);
    expect(r.status, r.stderr).toBe(0);
  });

  it("rejects a privileged sandbox pod", () => {
    const r = create(privilegedPod("evil"));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("sandbox-snapshot-privileged-pods");
    expect(r.stderr).toContain("may only be created by system:serviceaccount:kube-system:job-controller");
  });

  it("rejects a sandbox pod with a hostPath volume, even unprivileged", () => {
    const r = create(
      plain({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "hostpath" },
        spec: {
          containers: [{ name: "sandbox", image: "example.com/sandbox:1", volumeMounts: [{ name: "root", mountPath: "/host" }] }],
          volumes: [{ name: "root", hostPath: { path: "/" } }],
        },
      }),
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("sandbox-snapshot-privileged-pods");
  });

  it("rejects a privileged pod that claims to come from the Job controller but is not our committer", () => {
    const r = create(privilegedPod("fake-committer"), "system:serviceaccount:kube-system:job-controller");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/controlled by a Job named <snapshot>-commit/);
  });

  it("admits ordinary, unprivileged sandbox pods", () => {
    const r = create(plain({ apiVersion: "v1", kind: "Pod", metadata: { name: "ordinary" }, spec: { containers: [{ name: "sandbox", image: "example.com/sandbox:1" }] } }));
    expect(r.status, r.stderr).toBe(0);
  });

  it("leaves namespaces that are not labelled as sandbox namespaces alone", () => {
    const r = create(privilegedPod("elsewhere"), undefined, OTHER_NS);
    expect(r.status, r.stderr).toBe(0);
  });

  it("rejects our commit Job when anyone but Metacontroller creates it", async () => {
    const other = (await c().custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: SNAPSHOTS,
      body: snapshotObject(NS, "snap2", { podName: "sbx-0" }),
    })) as Snapshot;
    const r = create(ourJob("commit", other));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("sandbox-snapshot-privileged-jobs");
    expect(r.stderr).toContain(`may only be created by ${METACONTROLLER}`);
  });

  it("rejects a privileged Job from Metacontroller with another image, a command override, no SandboxSnapshot owner or the wrong name", async () => {
    const snap3 = (await c().custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: SNAPSHOTS,
      body: snapshotObject(NS, "snap3", { podName: "sbx-0" }),
    })) as Snapshot;
    const base = ourJob("commit", snap3);
    const podSpec = (j: Job): { containers: { image: string; command?: string[] }[] } =>
      (j.spec as { template: { spec: { containers: { image: string; command?: string[] }[] } } }).template.spec;
    const variants: [string, Job, RegExp][] = [];
    const otherImage = structuredClone(base);
    (podSpec(otherImage).containers[0] ?? { image: "" }).image = "example.com/anything:1";
    variants.push(["another image", otherImage, /committer image/]);
    const shell = structuredClone(base);
    (podSpec(shell).containers[0] ?? { image: "" }).command = ["/bin/sh", "-c", "cat /etc/shadow"];
    variants.push(["a command override", shell, /no command override/]);
    const orphan = structuredClone(base);
    delete orphan.metadata.ownerReferences;
    variants.push(["no owner", orphan, /SandboxSnapshot \(sandbox\.opensandbox\.io\) as its controller owner/]);
    const renamed = structuredClone(base);
    renamed.metadata.name = "snap3-debug";
    variants.push(["the wrong name", renamed, /named <snapshot>-commit or <snapshot>-unpause/]);
    for (const [what, job, message] of variants) {
      const r = create(job, METACONTROLLER);
      expect(r.status, what).not.toBe(0);
      expect(r.stderr, what).toMatch(message);
    }
  });

  it("rejects attaching an ephemeral debug container to the committer pod or swapping its image", async () => {
    const pod = await waitFor(
      "the commit Job's pod",
      async () => (await c().core.listNamespacedPod({ namespace: NS, labelSelector: "job-name=snap1-commit" })).items[0],
      60_000,
      250,
    );
    const name = pod.metadata?.name ?? "";
    const patch = {
      spec: { ephemeralContainers: [{ name: "debugger", image: "example.com/busybox:1", command: ["sh"], stdin: true, tty: true }] },
    };
    const r = c().kubectl(["patch", "pod", name, "-n", NS, "--subresource=ephemeralcontainers", "--type=strategic", "-p", JSON.stringify(patch)]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("sandbox-snapshot-privileged-pods");
    // Nor may anyone swap the admitted pod's image (a pod's image is mutable).
    const swap = c().kubectl(["set", "image", `pod/${name}`, "-n", NS, "committer=example.com/evil:1"]);
    expect(swap.status).not.toBe(0);
    expect(swap.stderr).toMatch(/committer image/);
  });
});
