// The escape attempts the admission policies (deploy/components/admission) must stop, as data:
// test/cluster/admission.test.ts runs every row against a real API server as a namespace editor,
// and test/unit/admission-docs.test.ts checks that docs/security.md shows exactly this table, so the
// documented outcomes are the tested ones.

export const SANDBOX_IMAGE = "example.com/sandbox:1";
export const POD_SECURITY_POLICY = "sandbox-snapshot-pod-security";

/** What the cluster test knows once our real commit Job and its pod exist. */
export interface AttemptContext {
  namespace: string;
  /** The pod the Job controller created for our commit Job. */
  commitPod: string;
  commitJob: string;
  commitJobUid: string;
  /** The snapshot the commit Job belongs to. */
  snapshot: string;
  /** An ordinary (baseline) pod of the namespace editor. */
  ordinaryPod: string;
  committerImage: string;
}

export type AttemptAction =
  /** kubectl create of the object. */
  | { kind: "create"; object: (ctx: AttemptContext) => object }
  /** kubectl patch --subresource=ephemeralcontainers (what `kubectl debug` does). */
  | { kind: "ephemeral"; pod: "commit" | "ordinary"; container: Record<string, unknown> }
  /** kubectl set image on the commit pod. */
  | { kind: "image"; image: string }
  /** kubectl exec into the commit pod. */
  | { kind: "exec" }
  /** kubectl patch (merge) of the ordinary pod's metadata. */
  | { kind: "metadata"; patch: (ctx: AttemptContext) => Record<string, unknown> };

export interface EscapeAttempt {
  /** What is tried, for the docs table. */
  what: string;
  /** The kind of object written (docs column). */
  object: string;
  action: AttemptAction;
  /** The field the denial message names (shown in the docs; a substring of the API server's answer). */
  names: string;
  /** More of the message, when the field alone does not say which rule answered. */
  message?: string;
  /** The policy that must answer (default sandbox-snapshot-pod-security). */
  policy?: string;
  /**
   * Refused by the API server's own validation before admission (in every namespace): what is
   * documented, and tested, is that it stays refused.
   */
  refusedByValidation?: string;
}

const pod = (name: string, spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}, container: Record<string, unknown> = {}): object => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, ...metadata },
  spec: { containers: [{ name: "sandbox", image: SANDBOX_IMAGE, ...container }], ...spec },
});

const sc = (securityContext: Record<string, unknown>): Record<string, unknown> => ({ securityContext });

const template = (spec: Record<string, unknown>, container: Record<string, unknown> = {}, labels: Record<string, string> = { app: "x" }): object => ({
  metadata: { labels },
  spec: { containers: [{ name: "sandbox", image: SANDBOX_IMAGE, ...container }], ...spec },
});

const job = (name: string, spec: Record<string, unknown>, container: Record<string, unknown> = {}): object => ({
  apiVersion: "batch/v1",
  kind: "Job",
  metadata: { name },
  spec: { backoffLimit: 0, template: template({ restartPolicy: "Never", ...spec }, container) },
});

const apps = (kind: string, name: string, spec: Record<string, unknown>, container: Record<string, unknown> = {}, labels: Record<string, string> = { app: name }): object => ({
  apiVersion: "apps/v1",
  kind,
  metadata: { name },
  spec: {
    selector: { matchLabels: labels },
    ...(kind === "StatefulSet" ? { serviceName: name } : {}),
    template: template(spec, container, labels),
  },
});

const SNAPSHOT_LABEL = "sandbox.opensandbox.io/sandbox-snapshot-name";
const PRIVILEGED_LABEL = "sandbox.opensandbox.io/privileged-node-access";

export const ESCAPE_ATTEMPTS: readonly EscapeAttempt[] = [
  { what: "privileged container", object: "Pod", action: { kind: "create", object: () => pod("privileged", {}, {}, sc({ privileged: true })) }, names: "spec.containers[sandbox].securityContext.privileged" },
  {
    what: "privileged init container",
    object: "Pod",
    action: { kind: "create", object: () => pod("privileged-init", { initContainers: [{ name: "setup", image: SANDBOX_IMAGE, securityContext: { privileged: true } }] }) },
    names: "spec.initContainers[setup].securityContext.privileged",
  },
  { what: "host PID namespace (`nsenter -t 1`)", object: "Pod", action: { kind: "create", object: () => pod("host-pid", { hostPID: true }) }, names: "spec.hostPID" },
  { what: "host network namespace", object: "Pod", action: { kind: "create", object: () => pod("host-network", { hostNetwork: true }) }, names: "spec.hostNetwork" },
  { what: "host IPC namespace", object: "Pod", action: { kind: "create", object: () => pod("host-ipc", { hostIPC: true }) }, names: "spec.hostIPC" },
  {
    what: "host port",
    object: "Pod",
    action: { kind: "create", object: () => pod("host-port", {}, {}, { ports: [{ containerPort: 80, hostPort: 8080 }] }) },
    names: "spec.containers[sandbox].ports[*].hostPort",
  },
  {
    what: "capabilities SYS_ADMIN and SYS_PTRACE",
    object: "Pod",
    action: { kind: "create", object: () => pod("caps", {}, {}, sc({ capabilities: { add: ["NET_BIND_SERVICE", "SYS_ADMIN", "SYS_PTRACE"] } })) },
    names: "spec.containers[sandbox].securityContext.capabilities.add (SYS_ADMIN, SYS_PTRACE)",
  },
  {
    what: "OpenSandbox-shaped pod with an egress sidecar adding NET_ADMIN, without the documented set-up",
    object: "Pod",
    action: { kind: "create", object: () => openSandboxPod("egress-no-setup") },
    names: "spec.containers[egress].securityContext.capabilities.add (NET_ADMIN)",
  },
  {
    what: "hostPath volume of the node's `/`",
    object: "Pod",
    action: { kind: "create", object: () => pod("host-path", { volumes: [{ name: "root", hostPath: { path: "/" } }] }, {}, { volumeMounts: [{ name: "root", mountPath: "/host" }] }) },
    names: "spec.volumes[root].hostPath",
  },
  {
    what: "unmasked /proc (`procMount: Unmasked`)",
    object: "Pod",
    action: { kind: "create", object: () => pod("proc-mount", {}, {}, sc({ procMount: "Unmasked" })) },
    names: "spec.containers[0].securityContext.procMount",
    refusedByValidation: "Kubernetes 1.35 accepts `Unmasked` only with `hostUsers: false`, which baseline allows; the policy's rule (for older API servers) names `spec.containers[sandbox].securityContext.procMount`",
  },
  {
    what: "seccomp `Unconfined` for the pod",
    object: "Pod",
    action: { kind: "create", object: () => pod("seccomp-pod", sc({ seccompProfile: { type: "Unconfined" } })) },
    names: "spec.securityContext.seccompProfile.type",
  },
  {
    what: "seccomp `Unconfined` for a container",
    object: "Pod",
    action: { kind: "create", object: () => pod("seccomp-container", {}, {}, sc({ seccompProfile: { type: "Unconfined" } })) },
    names: "spec.containers[sandbox].securityContext.seccompProfile.type",
  },
  {
    what: "AppArmor `Unconfined` (field)",
    object: "Pod",
    action: { kind: "create", object: () => pod("apparmor-field", sc({ appArmorProfile: { type: "Unconfined" } })) },
    names: "spec.securityContext.appArmorProfile.type",
  },
  {
    what: "AppArmor `unconfined` (annotation)",
    object: "Pod",
    action: {
      kind: "create",
      object: () => pod("apparmor-annotation", {}, { annotations: { "container.apparmor.security.beta.kubernetes.io/sandbox": "unconfined" } }),
    },
    names: "metadata.annotations[container.apparmor.security.beta.kubernetes.io/sandbox]",
  },
  {
    what: "seccomp `unconfined` (annotation)",
    object: "Pod",
    action: { kind: "create", object: () => pod("seccomp-annotation", {}, { annotations: { "seccomp.security.alpha.kubernetes.io/pod": "unconfined" } }) },
    names: "metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]",
  },
  {
    what: "unsafe sysctl `kernel.msgmax`",
    object: "Pod",
    action: { kind: "create", object: () => pod("sysctl", sc({ sysctls: [{ name: "kernel.msgmax", value: "65536" }] })) },
    names: "spec.securityContext.sysctls[kernel.msgmax]",
  },
  {
    what: "SELinux type `spc_t` (unconfined)",
    object: "Pod",
    action: { kind: "create", object: () => pod("selinux-type", sc({ seLinuxOptions: { type: "spc_t" } })) },
    names: "spec.securityContext.seLinuxOptions",
  },
  {
    what: "SELinux user for a container",
    object: "Pod",
    action: { kind: "create", object: () => pod("selinux-user", {}, {}, sc({ seLinuxOptions: { user: "system_u" } })) },
    names: "spec.containers[sandbox].securityContext.seLinuxOptions",
  },
  {
    what: "Windows HostProcess container",
    object: "Pod",
    action: {
      kind: "create",
      object: () => pod("host-process", { hostNetwork: true, securityContext: { windowsOptions: { hostProcess: true, runAsUserName: "NT AUTHORITY\\SYSTEM" } } }),
    },
    names: "spec.securityContext.windowsOptions.hostProcess",
  },
  {
    what: "liveness probe aimed at another host (169.254.169.254)",
    object: "Pod",
    action: { kind: "create", object: () => pod("probe-host", {}, {}, { livenessProbe: { httpGet: { host: "169.254.169.254", path: "/", port: 80 } } }) },
    names: "spec.containers[sandbox].livenessProbe.httpGet.host",
  },
  {
    what: "privileged container in a Job's template",
    object: "Job",
    action: { kind: "create", object: () => job("privileged-job", {}, sc({ privileged: true })) },
    names: "spec.template.spec.containers[sandbox].securityContext.privileged",
  },
  { what: "host PID in a Job's template", object: "Job", action: { kind: "create", object: () => job("host-pid-job", { hostPID: true }) }, names: "spec.template.spec.hostPID" },
  {
    what: "hostPath in a CronJob's Job template",
    object: "CronJob",
    action: {
      kind: "create",
      object: () => ({
        apiVersion: "batch/v1",
        kind: "CronJob",
        metadata: { name: "host-path-cron" },
        spec: { schedule: "*/5 * * * *", jobTemplate: { spec: { template: template({ restartPolicy: "Never", volumes: [{ name: "root", hostPath: { path: "/" } }] }) } } },
      }),
    },
    names: "spec.jobTemplate.spec.template.spec.volumes[root].hostPath",
  },
  {
    what: "SYS_ADMIN in a Deployment's template",
    object: "Deployment",
    action: { kind: "create", object: () => apps("Deployment", "caps-deployment", {}, sc({ capabilities: { add: ["SYS_ADMIN"] } })) },
    names: "spec.template.spec.containers[sandbox].securityContext.capabilities.add (SYS_ADMIN)",
  },
  { what: "host network in a DaemonSet", object: "DaemonSet", action: { kind: "create", object: () => apps("DaemonSet", "host-net-ds", { hostNetwork: true }) }, names: "spec.template.spec.hostNetwork" },
  {
    what: "privileged init container in a StatefulSet",
    object: "StatefulSet",
    action: {
      kind: "create",
      object: () => apps("StatefulSet", "privileged-sts", { initContainers: [{ name: "setup", image: SANDBOX_IMAGE, securityContext: { privileged: true } }] }),
    },
    names: "spec.template.spec.initContainers[setup].securityContext.privileged",
  },
  {
    what: "seccomp `Unconfined` in a ReplicaSet",
    object: "ReplicaSet",
    action: { kind: "create", object: () => apps("ReplicaSet", "seccomp-rs", sc({ seccompProfile: { type: "Unconfined" } })) },
    names: "spec.template.spec.securityContext.seccompProfile.type",
  },
  {
    what: "planted look-alike commit pod: our labels, an owner reference to the real commit Job, the committer image, privileged",
    object: "Pod",
    action: {
      kind: "create",
      object: (ctx) => ({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: "fake-commit",
          labels: { [SNAPSHOT_LABEL]: ctx.snapshot, [PRIVILEGED_LABEL]: "true" },
          ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: ctx.commitJob, uid: ctx.commitJobUid, controller: true }],
        },
        spec: {
          containers: [{ name: "committer", image: ctx.committerImage, securityContext: { privileged: true } }],
          volumes: [{ name: "root", hostPath: { path: "/" } }],
        },
      }),
    },
    names: "metadata.ownerReferences",
    message: "may only be created by system:serviceaccount:kube-system:job-controller",
  },
  {
    what: "unprivileged pod with only our Job labels (to be mistaken for a commit pod)",
    object: "Pod",
    action: { kind: "create", object: (ctx) => pod("labels-only", {}, { labels: { [SNAPSHOT_LABEL]: ctx.snapshot, [PRIVILEGED_LABEL]: "true" } }) },
    names: `metadata.labels[${SNAPSHOT_LABEL}]`,
    message: "may only be created by system:serviceaccount:kube-system:job-controller",
  },
  {
    what: "adding an owner reference to the real commit Job to an existing pod (bait for adoption)",
    object: "Pod (update)",
    action: {
      kind: "metadata",
      patch: (ctx) => ({ metadata: { ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: ctx.commitJob, uid: ctx.commitJobUid }] } }),
    },
    names: "metadata.ownerReferences",
    message: "cannot be added or changed after creation",
  },
  {
    what: "Job named like a commit Job (`<snapshot>-commit`, squatting the name)",
    object: "Job",
    action: { kind: "create", object: () => job("not-yet-taken-commit", {}) },
    names: "metadata.name",
    message: "may only be created by system:serviceaccount:metacontroller:metacontroller",
  },
  {
    what: "Deployment whose pods carry our Job labels",
    object: "Deployment",
    action: { kind: "create", object: (ctx) => apps("Deployment", "labelled-deployment", {}, {}, { [SNAPSHOT_LABEL]: ctx.snapshot }) },
    names: `spec.template.metadata.labels[${SNAPSHOT_LABEL}]`,
  },
  {
    what: "swapping the image of the admitted commit pod",
    object: "Pod (update)",
    action: { kind: "image", image: "example.com/evil:1" },
    names: "spec.containers[committer].image",
  },
  {
    what: "ephemeral debug container on the commit pod (`kubectl debug`)",
    object: "pods/ephemeralcontainers",
    action: { kind: "ephemeral", pod: "commit", container: { name: "debugger", image: "example.com/busybox:1", command: ["sh"], stdin: true, tty: true } },
    names: "spec.containers / initContainers / ephemeralContainers",
    message: "a commit/unpause pod runs exactly one container",
  },
  {
    what: "privileged ephemeral debug container on an ordinary pod",
    object: "pods/ephemeralcontainers",
    action: { kind: "ephemeral", pod: "ordinary", container: { name: "debugger", image: "example.com/busybox:1", securityContext: { privileged: true } } },
    names: "spec.ephemeralContainers[debugger].securityContext.privileged",
  },
  {
    what: "`kubectl exec` into the running commit pod",
    object: "pods/exec",
    action: { kind: "exec" },
    names: "pods/exec",
    message: "exec, attach and port-forward into them are refused",
    policy: "sandbox-snapshot-commit-pod-connect",
  },
];

/** OpenSandbox's Kubernetes runtime with network policy on: the sandbox plus an egress sidecar with NET_ADMIN. */
export function openSandboxPod(name: string): object {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { "batch-sandbox.sandbox.opensandbox.io/name": name } },
    spec: {
      containers: [
        { name: "sandbox", image: SANDBOX_IMAGE },
        { name: "egress", image: "example.com/opensandbox-egress:1", securityContext: { capabilities: { add: ["NET_ADMIN"] } } },
      ],
    },
  };
}

/** The documented OpenSandbox set-up: the identity that creates its sandbox pods, and NET_ADMIN for them. */
export const OPENSANDBOX_REQUESTER = "system:serviceaccount:opensandbox-system:opensandbox-controller-manager";
export const OPENSANDBOX_PARAMS = { extraCapabilities: "NET_ADMIN", extraCapabilitiesRequesters: OPENSANDBOX_REQUESTER } as const;

/** Objects a namespace editor may still create: baseline allows them. */
export const ADMITTED: readonly { what: string; kind: string; object: () => object }[] = [
  { what: "ordinary pod", kind: "Pod", object: () => pod("ordinary-admitted") },
  {
    what: "pod using what baseline allows: NET_BIND_SERVICE, RuntimeDefault seccomp and AppArmor, a safe sysctl, SELinux type container_t",
    kind: "Pod",
    object: () =>
      pod(
        "baseline-admitted",
        sc({ seccompProfile: { type: "RuntimeDefault" }, appArmorProfile: { type: "RuntimeDefault" }, sysctls: [{ name: "net.ipv4.ping_group_range", value: "0 1" }], seLinuxOptions: { type: "container_t" } }),
        {},
        sc({ capabilities: { add: ["NET_BIND_SERVICE"], drop: ["NET_RAW"] } }),
      ),
  },
  {
    what: "unmasked /proc in a user namespace (`hostUsers: false`, `procMount: Unmasked`), which baseline allows since v1.35",
    kind: "Pod",
    object: () => pod("user-namespace-proc", { hostUsers: false }, {}, sc({ procMount: "Unmasked" })),
  },
  { what: "Deployment of ordinary pods", kind: "Deployment", object: () => apps("Deployment", "ordinary-deployment", {}) },
];

/** The table in docs/security.md, generated from the rows above (test/unit/admission-docs.test.ts). */
export function attemptsTable(): string {
  const rows = ESCAPE_ATTEMPTS.map(
    (a, i) =>
      a.refusedByValidation !== undefined
        ? `| ${String(i + 1)} | ${a.what} | ${a.object} | refused by the API server's validation, naming \`${a.names}\` (${a.refusedByValidation}) |`
        : `| ${String(i + 1)} | ${a.what} | ${a.object} | denied by \`${a.policy ?? POD_SECURITY_POLICY}\`, naming \`${a.names}\` |`,
  );
  const admitted = ADMITTED.map((a, i) => `| A${String(i + 1)} | ${a.what} | ${a.kind} | admitted |`);
  return ["| # | a namespace editor tries | object | outcome (tested) |", "| --- | --- | --- | --- |", ...rows, ...admitted].join("\n");
}
