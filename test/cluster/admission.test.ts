// The admission policies of deploy/ (components/admission) on a real API server, with the real Job
// controller and garbage collector of kube-controller-manager: installed the documented way (an
// overlay that pins the committer image by digest), then attacked by a namespace editor with every
// row of test/support/admission-attempts.ts (the table in docs/security.md). Our commit and unpause
// Jobs, created as Metacontroller, and the pods the Job controller creates for them are admitted;
// other namespaces are untouched; garbage collection and orphaning still work.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { RbacAuthorizationV1Api, type KubernetesObject, type V1Job, type V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { loadConfig, type ControllerConfig } from "../../src/config/config.js";
import { commitJob, unpauseJob } from "../../src/jobs/committer-job.js";
import { LABEL_PRIVILEGED, LABEL_SNAPSHOT_NAME } from "../../src/reconcile/names.js";
import type { Job, SandboxSnapshot } from "../../src/api/types.js";
import {
  ADMITTED,
  ESCAPE_ATTEMPTS,
  OPENSANDBOX_PARAMS,
  OPENSANDBOX_REQUESTER,
  POD_SECURITY_POLICY,
  openSandboxPod,
  type AttemptContext,
  type EscapeAttempt,
} from "../support/admission-attempts.js";
import { missingClusterComponents, startCluster, waitFor, type Cluster } from "../support/cluster.js";
import { GROUP, SNAPSHOTS, SNAPSHOT_CRD, VERSION, plain, snapshotObject, type Snapshot } from "../support/cluster-e2e.js";

const missing = missingClusterComponents();
const DEPLOY = fileURLToPath(new URL("../../deploy/", import.meta.url));
const NS = "sandboxes";
const OTHER_NS = "not-a-sandbox-namespace";
const SYSTEM_NS = "sandbox-snapshot-system";
const PARAMS = "sandbox-snapshot-admission-params";
const METACONTROLLER = "system:serviceaccount:metacontroller:metacontroller";
const JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller";
/** The namespace editor: bound to `edit` in both namespaces, plus `kubectl debug` (ephemeral containers). */
const TENANT = "tenant-alice";
/** What an operator puts into COMMITTER_IMAGE after looking the digest up (docs/quick-start.md, docs/security.md). */
const PINNED_COMMITTER = `ghcr.io/sandbox-snapshot/image-committer:0.1.0@sha256:${"4e".repeat(32)}`;
const INSTALLED_KINDS = new Set(["Namespace", "CustomResourceDefinition", "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);

interface Result {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * The install as docs/quick-start.md describes it: a copy of deploy/overlays/default whose settings pin
 * COMMITTER_IMAGE by digest (the overlay's replacements copy it into the admission parameters).
 */
function pinnedOverlay(): string {
  const dir = mkdtempSync(join(tmpdir(), "admission-overlay-"));
  const text = readFileSync(join(DEPLOY, "overlays/default/kustomization.yaml"), "utf8")
    // kustomize refuses absolute paths to bases and components.
    .replaceAll("../../", `${relative(dir, DEPLOY)}/`)
    .replace(/(- SNAPSHOT_REGISTRY=.*\n)/, `$1      - COMMITTER_IMAGE=${PINNED_COMMITTER}\n`);
  expect(text).toContain(`COMMITTER_IMAGE=${PINNED_COMMITTER}`);
  writeFileSync(join(dir, "kustomization.yaml"), text);
  return dir;
}

describe.skipIf(missing)("admission policies for sandbox namespaces (real API server)", () => {
  let cluster: Cluster | undefined;
  let overlay: string | undefined;
  let config: ControllerConfig;
  let snapshot: Snapshot;
  let ctx: AttemptContext;
  const c = (): Cluster => {
    if (!cluster) throw new Error("cluster not started");
    return cluster;
  };

  const as = (who: string | undefined): string[] => (who !== undefined ? [`--as=${who}`] : []);
  /** Creates an object with kubectl, as `who` (impersonated) or as the admin. */
  const create = (obj: object, who?: string, namespace = NS): Result =>
    c().kubectl(["create", "-n", namespace, "-f", "-", ...as(who)], { input: JSON.stringify(obj) });
  const patchParams = (data: Record<string, string>): void => {
    const r = c().kubectl(["patch", "configmap", PARAMS, "-n", SYSTEM_NS, "--type=merge", "-p", JSON.stringify({ data })]);
    expect(r.status, r.stderr).toBe(0);
  };
  const createSnapshot = async (name: string): Promise<Snapshot> =>
    (await c().custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: SNAPSHOTS, body: snapshotObject(NS, name, { podName: "sbx-0" }) })) as Snapshot;

  /** The Job as Metacontroller sends it: built by our code, the SandboxSnapshot as controller owner. */
  const ourJob = (kind: "commit" | "unpause", snap: Snapshot = snapshot): Job => {
    const s = snap as unknown as SandboxSnapshot;
    const input = { snapshot: s, podName: "sbx-0", nodeName: "node-a", sourcePod: undefined };
    const job =
      kind === "commit"
        ? commitJob({ ...input, targets: [{ containerName: "sandbox", imageUri: "registry.example.com/snapshots/sbx-sandbox:snap-1" }] }, config)
        : unpauseJob({ ...input, containers: ["sandbox"] }, config);
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
  const jobPod = (job: string): Promise<V1Pod> =>
    waitFor(`the pod of Job ${job}`, async () => (await c().core.listNamespacedPod({ namespace: NS, labelSelector: `job-name=${job}` })).items[0], 60_000, 250);

  /** Runs one escape attempt as the namespace editor. */
  const attempt = (a: EscapeAttempt, namespace = NS): Result => {
    const act = a.action;
    switch (act.kind) {
      case "create":
        return create(act.object(ctx), TENANT, namespace);
      case "ephemeral": {
        const name = act.pod === "commit" ? ctx.commitPod : ctx.ordinaryPod;
        const patch = { spec: { ephemeralContainers: [act.container] } };
        return c().kubectl(["patch", "pod", name, "-n", namespace, "--subresource=ephemeralcontainers", "--type=strategic", "-p", JSON.stringify(patch), ...as(TENANT)]);
      }
      case "image":
        return c().kubectl(["set", "image", `pod/${ctx.commitPod}`, "-n", namespace, `committer=${act.image}`, ...as(TENANT)]);
      case "exec":
        return c().kubectl(["exec", ctx.commitPod, "-n", namespace, ...as(TENANT), "--", "/bin/sh", "-c", "id"]);
      case "metadata":
        return c().kubectl(["patch", "pod", ctx.ordinaryPod, "-n", namespace, "--type=merge", "-p", JSON.stringify(act.patch(ctx)), ...as(TENANT)]);
    }
  };

  beforeAll(async () => {
    cluster = await startCluster({ metacontroller: false });
    overlay = pinnedOverlay();
    const rendered = c().kubectl(["kustomize", overlay]);
    expect(rendered.status, rendered.stderr).toBe(0);
    const objs = parseAllDocuments(rendered.stdout)
      .map((d) => d.toJS() as KubernetesObject)
      .filter((o) => INSTALLED_KINDS.has(o.kind ?? ""));
    const settings = objs.find((o) => o.kind === "ConfigMap" && o.metadata?.name?.startsWith("sandbox-snapshot-controller-config-")) as unknown as {
      data: Record<string, string>;
    };
    config = loadConfig(settings.data);
    expect(config.committerImage).toBe(PINNED_COMMITTER);
    const params = objs.find((o) => o.kind === "ConfigMap" && o.metadata?.name === PARAMS) as unknown as { data: Record<string, string> };
    expect(params.data.committerImage, "the overlay's replacements copy the pinned image into the parameters").toBe(PINNED_COMMITTER);
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
      // Pods need the namespace's default ServiceAccount (ServiceAccount admission).
      await waitFor(`ServiceAccount ${name}/default`, async () => {
        await c().core.readNamespacedServiceAccount({ name: "default", namespace: name });
        return true;
      });
    }
    const binding = (kind: "ClusterRoleBinding" | "RoleBinding", name: string, role: string, subject: object, namespace?: string): KubernetesObject =>
      plain<KubernetesObject>({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind,
        metadata: { name, ...(namespace !== undefined ? { namespace } : {}) },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
        subjects: [subject],
      });
    const user = { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: TENANT };
    // The `edit` ClusterRole is filled by the clusterrole-aggregation controller, which this control
    // plane does not run: the namespace editor gets the rules edit aggregates (from the bootstrap
    // roles system:aggregate-to-edit and -view), plus pods/ephemeralcontainers for `kubectl debug`.
    const aggregated = await Promise.all(
      ["system:aggregate-to-edit", "system:aggregate-to-view"].map(async (name) => (await c().kc.makeApiClient(RbacAuthorizationV1Api).readClusterRole({ name })).rules ?? []),
    );
    await c().apply([
      plain<KubernetesObject>({
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: { name: "namespace-editor" },
        rules: [...aggregated.flat(), { apiGroups: [""], resources: ["pods/ephemeralcontainers"], verbs: ["get", "patch", "update"] }],
      }),
      // Metacontroller's identity in a real cluster, with the rights its upstream install has.
      binding("ClusterRoleBinding", "metacontroller-test", "cluster-admin", { kind: "ServiceAccount", name: "metacontroller", namespace: "metacontroller" }),
      // OpenSandbox's controller creates its sandbox pods.
      binding("RoleBinding", "opensandbox-controller", "namespace-editor", { kind: "ServiceAccount", name: "opensandbox-controller-manager", namespace: "opensandbox-system" }, NS),
      ...[NS, OTHER_NS].map((ns) => binding("RoleBinding", "tenant-edit", "namespace-editor", user, ns)),
    ]);
    snapshot = await createSnapshot("snap1");

    // Policies take effect once the API server has loaded them and their parameters.
    await waitFor(
      "admission policies enforced",
      () => {
        const r = create(plain({ apiVersion: "v1", kind: "Pod", metadata: { name: `probe-${String(Date.now())}` }, spec: { containers: [{ name: "c", image: "x", securityContext: { privileged: true } }] } }));
        return Promise.resolve(r.status !== 0 && r.stderr.includes(POD_SECURITY_POLICY) ? true : undefined);
      },
      60_000,
      500,
    );

    const commit = create(ourJob("commit"), METACONTROLLER);
    expect(commit.status, commit.stderr).toBe(0);
    const job = await c().batch.readNamespacedJob({ name: "snap1-commit", namespace: NS });
    const pod = await jobPod("snap1-commit");
    const ordinary = create(plain({ apiVersion: "v1", kind: "Pod", metadata: { name: "ordinary" }, spec: { containers: [{ name: "sandbox", image: "example.com/sandbox:1" }] } }), TENANT);
    expect(ordinary.status, ordinary.stderr).toBe(0);
    ctx = {
      namespace: NS,
      commitPod: pod.metadata?.name ?? "",
      commitJob: "snap1-commit",
      commitJobUid: job.metadata?.uid ?? "",
      snapshot: "snap1",
      ordinaryPod: "ordinary",
      committerImage: config.committerImage,
    };
  }, 300_000);

  afterAll(async () => {
    await cluster?.stop();
    if (overlay) rmSync(overlay, { recursive: true, force: true });
  });

  const expectPrivilegedCommitterPod = (pod: V1Pod, job: string): void => {
    expect(pod.spec?.containers[0]?.securityContext?.privileged).toBe(true);
    expect(pod.spec?.containers[0]?.image).toBe(PINNED_COMMITTER);
    expect(pod.spec?.volumes?.some((v) => v.hostPath?.path === config.containerdSocket)).toBe(true);
    expect(pod.metadata?.labels?.[LABEL_SNAPSHOT_NAME]).toBe("snap1");
    expect(pod.metadata?.labels?.[LABEL_PRIVILEGED]).toBe("true");
    expect(pod.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "Job", name: job, controller: true });
  };

  it("admits the commit Job created by Metacontroller, and the privileged pod the real Job controller creates for it", async () => {
    expectPrivilegedCommitterPod(await jobPod("snap1-commit"), "snap1-commit");
  });

  it("admits the unpause Job and its pod too", async () => {
    const r = create(ourJob("unpause"), METACONTROLLER);
    expect(r.status, r.stderr).toBe(0);
    expectPrivilegedCommitterPod(await jobPod("snap1-unpause"), "snap1-unpause");
  });

  describe("a namespace editor's escape attempts (docs/security.md)", () => {
    it("the table has at least 20 attempts", () => {
      expect(ESCAPE_ATTEMPTS.length).toBeGreaterThanOrEqual(20);
    });

    it.each(ESCAPE_ATTEMPTS.map((a, i) => [`${String(i + 1)}. ${a.what}`, a] as const))("denied: %s", (_name, a) => {
      const r = attempt(a);
      expect(r.status, `admitted: ${r.stdout}`).not.toBe(0);
      // The denial itself, not kubectl's warnings before it (deprecated annotations are warned about).
      let denial = r.stderr;
      if (a.refusedByValidation !== undefined) {
        expect(denial).not.toContain("ValidatingAdmissionPolicy");
      } else {
        const policy = `ValidatingAdmissionPolicy '${a.policy ?? POD_SECURITY_POLICY}'`;
        expect(denial).toContain(policy);
        denial = denial.slice(denial.indexOf(policy));
      }
      expect(denial).toContain(a.names);
      if (a.message !== undefined) expect(denial).toContain(a.message);
    });

    it.each(ESCAPE_ATTEMPTS.filter((a) => a.action.kind === "create" && a.refusedByValidation === undefined).map((a) => [a.what, a] as const))(
      "a namespace that is not a sandbox namespace is untouched: %s",
      (_name, a) => {
        const r = attempt(a, OTHER_NS);
        expect(r.status, r.stderr).toBe(0);
      },
    );

    it.each(ADMITTED.map((a) => [a.what, a] as const))("still admitted: %s", (_name, a) => {
      const r = create(a.object(), TENANT);
      expect(r.status, r.stderr).toBe(0);
    });
  });

  it("rejects a privileged pod that claims to come from the Job controller but is not our committer", () => {
    const r = create(
      plain({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "fake-committer", labels: { [LABEL_SNAPSHOT_NAME]: "snap1", [LABEL_PRIVILEGED]: "true" } },
        spec: { containers: [{ name: "committer", image: PINNED_COMMITTER, securityContext: { privileged: true } }] },
      }),
      JOB_CONTROLLER,
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("metadata.ownerReferences / metadata.labels: a privileged or hostPath pod in a sandbox namespace must be controlled by the Job <snapshot>-commit");
  });

  it("rejects our commit Job when anyone but Metacontroller creates it", async () => {
    const r = create(ourJob("commit", await createSnapshot("snap2")), TENANT);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`may only be created by ${METACONTROLLER} in a sandbox namespace, not by ${TENANT}`);
  });

  it("rejects a privileged Job from Metacontroller with another image, a command override, extra security context, another host path, no SandboxSnapshot owner or the wrong name", async () => {
    const base = ourJob("commit", await createSnapshot("snap3"));
    type Spec = { containers: { image: string; command?: string[]; securityContext?: Record<string, unknown> }[]; volumes: { name: string; hostPath?: { path: string } }[] };
    const podSpec = (j: Job): Spec => (j.spec as { template: { spec: Spec } }).template.spec;
    const variant = (what: string, change: (j: Job) => void, message: string): [string, Job, string] => {
      const j = structuredClone(base);
      change(j);
      return [what, j, message];
    };
    const first = (j: Job): Spec["containers"][number] => podSpec(j).containers[0] ?? { image: "" };
    const variants = [
      variant("another image", (j) => (first(j).image = "example.com/anything:1"), "spec.template.spec.containers[committer].image: a commit/unpause pod must run the committer image"),
      variant("a command override", (j) => (first(j).command = ["/bin/sh", "-c", "cat /etc/shadow"]), "spec.template.spec.containers[committer].command"),
      variant("extra security context", (j) => (first(j).securityContext = { privileged: true, capabilities: { add: ["SYS_ADMIN"] } }), "spec.template.spec.containers[committer].securityContext"),
      variant("another host path", (j) => podSpec(j).volumes.push({ name: "root", hostPath: { path: "/" } }), "spec.template.spec.volumes: a commit/unpause pod may mount only"),
      variant("no owner", (j) => delete j.metadata.ownerReferences, "must be controlled by its SandboxSnapshot"),
      variant("the wrong name", (j) => (j.metadata.name = "snap3-debug"), "must be controlled by its SandboxSnapshot (sandbox.opensandbox.io), be named <snapshot>-commit"),
    ];
    for (const [what, job, message] of variants) {
      const r = create(job, METACONTROLLER);
      expect(r.status, what).not.toBe(0);
      expect(r.stderr, what).toContain(message);
    }
  });

  it("admits the OpenSandbox-shaped pod with the NET_ADMIN egress sidecar under the documented set-up, only from OpenSandbox's controller", async () => {
    patchParams(OPENSANDBOX_PARAMS);
    let n = 0;
    await waitFor(
      "the extra capability in effect",
      () => {
        const r = create(openSandboxPod(`sandbox-${String(++n)}`), OPENSANDBOX_REQUESTER);
        return r.status === 0;
      },
      30_000,
      500,
    );
    // The parameters name a requester, not a label: the namespace editor still gets baseline.
    const tenant = create(openSandboxPod("egress-from-tenant"), TENANT);
    expect(tenant.status).not.toBe(0);
    expect(tenant.stderr).toContain("spec.containers[egress].securityContext.capabilities.add (NET_ADMIN)");
    // Back to the defaults: nothing beyond baseline, whoever asks.
    patchParams({ extraCapabilities: "", extraCapabilitiesRequesters: "" });
    await waitFor(
      "the defaults back in effect",
      () => {
        const r = create(openSandboxPod(`sandbox-${String(++n)}`), OPENSANDBOX_REQUESTER);
        return r.status !== 0 && r.stderr.includes("capabilities.add (NET_ADMIN)");
      },
      30_000,
      500,
    );
  });

  it("refuses commit Jobs while the committer image in the parameters is a tag, naming the parameter", async () => {
    const snap = await createSnapshot("snap-tag");
    patchParams({ committerImage: "ghcr.io/sandbox-snapshot/image-committer:0.1.0" });
    const tagged = structuredClone(ourJob("commit", snap));
    (tagged.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0] = {
      ...((tagged.spec as { template: { spec: { containers: { image: string }[] } } }).template.spec.containers[0] ?? {}),
      image: "ghcr.io/sandbox-snapshot/image-committer:0.1.0",
    };
    try {
      await waitFor(
        "the tag refused",
        () => {
          const r = create(tagged, METACONTROLLER);
          return r.status !== 0 && r.stderr.includes("admission parameter committerImage") && r.stderr.includes("not pinned by digest");
        },
        30_000,
        500,
      );
    } finally {
      patchParams({ committerImage: PINNED_COMMITTER });
    }
  });

  describe("garbage collection and orphaning still work", () => {
    it("orphaning the unpause Job: the garbage collector removes the owner reference from its privileged pod", async () => {
      const created = create(ourJob("unpause", await createSnapshot("snap-orphan-pod")), METACONTROLLER);
      expect(created.status, created.stderr).toBe(0);
      const before = await jobPod("snap-orphan-pod-unpause");
      const r = c().kubectl(["delete", "job", "snap-orphan-pod-unpause", "-n", NS, "--cascade=orphan"]);
      expect(r.status, r.stderr).toBe(0);
      const after = await waitFor(
        "the orphaned pod without owner references",
        async () => {
          const p = await c().core.readNamespacedPod({ name: before.metadata?.name ?? "", namespace: NS });
          return (p.metadata?.ownerReferences ?? []).length === 0 ? p : undefined;
        },
        60_000,
        250,
      );
      expect(after.spec?.containers[0]?.securityContext?.privileged).toBe(true);
    });

    it("orphaning a SandboxSnapshot: the garbage collector removes the owner reference from its commit Job", async () => {
      const snap = await createSnapshot("snap-orphan");
      const r = create(ourJob("commit", snap), METACONTROLLER);
      expect(r.status, r.stderr).toBe(0);
      const d = c().kubectl(["delete", SNAPSHOTS, "snap-orphan", "-n", NS, "--cascade=orphan"]);
      expect(d.status, d.stderr).toBe(0);
      await waitFor(
        "the commit Job without owner references",
        async () => ((await c().batch.readNamespacedJob({ name: "snap-orphan-commit", namespace: NS })).metadata?.ownerReferences ?? []).length === 0,
        60_000,
        250,
      );
    });

    it("foreground deletion of a commit Job: the garbage collector deletes its pod, then lifts the Job's foregroundDeletion finalizer", async () => {
      const snap = await createSnapshot("snap-fg");
      const r = create(ourJob("commit", snap), METACONTROLLER);
      expect(r.status, r.stderr).toBe(0);
      const pod = await jobPod("snap-fg-commit");
      const d = c().kubectl(["delete", "job", "snap-fg-commit", "-n", NS, "--cascade=foreground", "--wait=false"]);
      expect(d.status, d.stderr).toBe(0);
      const name = pod.metadata?.name ?? "";
      await waitFor(
        "the garbage collector deleting the pod",
        async () => (await c().core.readNamespacedPod({ name, namespace: NS })).metadata?.deletionTimestamp !== undefined,
        60_000,
        250,
      );
      // No kubelet here to finish the pod's graceful termination: do its part.
      const f = c().kubectl(["delete", "pod", name, "-n", NS, "--grace-period=0", "--force"]);
      expect(f.status, f.stderr).toBe(0);
      await waitFor(
        "the Job gone (its foregroundDeletion finalizer removed by the garbage collector)",
        async () => (await c().batch.listNamespacedJob({ namespace: NS, fieldSelector: "metadata.name=snap-fg-commit" })).items.length === 0,
        60_000,
        250,
      );
    });

    it("deleting a SandboxSnapshot: its commit Job is collected, and the Job controller may still remove its pod's tracking finalizer", async () => {
      const snap = await createSnapshot("snap-gc");
      const r = create(ourJob("commit", snap), METACONTROLLER);
      expect(r.status, r.stderr).toBe(0);
      const pod = await jobPod("snap-gc-commit");
      expect(pod.metadata?.finalizers).toContain("batch.kubernetes.io/job-tracking");
      const d = c().kubectl(["delete", SNAPSHOTS, "snap-gc", "-n", NS, "--wait=false"]);
      expect(d.status, d.stderr).toBe(0);
      await waitFor(
        "the commit Job collected",
        async () => {
          const jobs = await c().batch.listNamespacedJob({ namespace: NS, fieldSelector: "metadata.name=snap-gc-commit" });
          return jobs.items.length === 0;
        },
        60_000,
        250,
      );
      // No kubelet runs here, so the pod stays Terminating; the finalizer removal is an UPDATE by the
      // Job controller that the policies must let through.
      await waitFor(
        "the pod's tracking finalizer removed",
        async () => {
          const p = await c().core.readNamespacedPod({ name: pod.metadata?.name ?? "", namespace: NS }).catch(() => undefined);
          return p === undefined || !(p.metadata?.finalizers ?? []).includes("batch.kubernetes.io/job-tracking");
        },
        60_000,
        250,
      );
    });
  });

  it("leaves a namespace that is not labelled as a sandbox namespace alone, for the Job controller's pods too", async () => {
    const r = create(
      plain<V1Job>({
        apiVersion: "batch/v1",
        kind: "Job",
        metadata: { name: "anything-commit" },
        spec: { template: { spec: { restartPolicy: "Never", hostPID: true, containers: [{ name: "c", image: "x", securityContext: { privileged: true } }] } } },
      }),
      TENANT,
      OTHER_NS,
    );
    expect(r.status, r.stderr).toBe(0);
    await waitFor(
      "the Job controller's pod in the other namespace",
      async () => (await c().core.listNamespacedPod({ namespace: OTHER_NS, labelSelector: "job-name=anything-commit" })).items[0],
      60_000,
      250,
    );
  });
});
