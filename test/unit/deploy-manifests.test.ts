// deploy/: `kubectl kustomize` renders every overlay, and the objects are consistent with the code:
// settings parse with loadConfig, the Service is what the CompositeController calls, RBAC is
// get/create only, the hook server is locked down, and the admission policies' parameters admit
// exactly the Jobs src/jobs/committer-job.ts builds.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import type { SandboxSnapshot } from "../../src/api/types.js";
import { SETTINGS, loadConfig } from "../../src/config/config.js";
import { commitJob, unpauseJob } from "../../src/jobs/committer-job.js";
import { LABEL_PRIVILEGED, LABEL_SNAPSHOT_NAME } from "../../src/reconcile/names.js";
import { missingComponents } from "../support/components.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const NAMESPACE = "sandbox-snapshot-system";
const SANDBOX_NS_LABEL = "sandbox.opensandbox.io/sandbox-namespace";

interface Meta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
}
interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata?: Meta;
  [key: string]: unknown;
}
interface Container {
  name: string;
  image?: string;
  command?: string[];
  env?: { name: string; value?: string }[];
  envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name?: string; containerPort: number }[];
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    privileged?: boolean;
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  serviceAccountName?: string;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  topologySpreadConstraints?: { topologyKey: string; labelSelector?: { matchLabels?: Record<string, string> } }[];
  containers: Container[];
  initContainers?: Container[];
  hostPID?: boolean;
  hostIPC?: boolean;
  hostNetwork?: boolean;
  volumes?: { name: string; secret?: { secretName: string; optional?: boolean; items?: { key: string; path: string }[] }; hostPath?: { path: string } }[];
}
interface Deployment extends K8sObject {
  spec: { replicas: number; selector: { matchLabels: Record<string, string> }; template: { metadata: Meta; spec: PodSpec } };
}
interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
interface ValidatingAdmissionPolicy extends K8sObject {
  spec: {
    failurePolicy?: string;
    paramKind?: { apiVersion: string; kind: string };
    matchConstraints: { resourceRules: { apiGroups: string[]; resources: string[]; operations: string[] }[] };
    variables?: { name: string; expression: string }[];
    validations: { expression: string; message?: string; messageExpression?: string }[];
  };
}
interface PolicyBinding extends K8sObject {
  spec: {
    policyName: string;
    validationActions: string[];
    paramRef?: { name: string; namespace?: string; parameterNotFoundAction?: string };
    matchResources?: { namespaceSelector?: { matchLabels?: Record<string, string> } };
  };
}

// apiVersion expected for each kind, and whether it is namespaced.
const KINDS: Record<string, { apiVersion: string; namespaced: boolean }> = {
  Namespace: { apiVersion: "v1", namespaced: false },
  ServiceAccount: { apiVersion: "v1", namespaced: true },
  ConfigMap: { apiVersion: "v1", namespaced: true },
  Service: { apiVersion: "v1", namespaced: true },
  Deployment: { apiVersion: "apps/v1", namespaced: true },
  PodDisruptionBudget: { apiVersion: "policy/v1", namespaced: true },
  NetworkPolicy: { apiVersion: "networking.k8s.io/v1", namespaced: true },
  ClusterRole: { apiVersion: "rbac.authorization.k8s.io/v1", namespaced: false },
  ClusterRoleBinding: { apiVersion: "rbac.authorization.k8s.io/v1", namespaced: false },
  CustomResourceDefinition: { apiVersion: "apiextensions.k8s.io/v1", namespaced: false },
  CompositeController: { apiVersion: "metacontroller.k8s.io/v1alpha1", namespaced: false },
  ValidatingAdmissionPolicy: { apiVersion: "admissionregistration.k8s.io/v1", namespaced: false },
  ValidatingAdmissionPolicyBinding: { apiVersion: "admissionregistration.k8s.io/v1", namespaced: false },
  PriorityClass: { apiVersion: "scheduling.k8s.io/v1", namespaced: false },
};

const DNS_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function render(dir: string): K8sObject[] {
  const out = execFileSync("kubectl", ["kustomize", dir], { cwd: ROOT, encoding: "utf8", timeout: 60_000 });
  return parseAllDocuments(out).map((d) => {
    if (d.errors.length > 0) throw new Error(`${dir}: ${d.errors.map((e) => e.message).join("; ")}`);
    return d.toJS() as K8sObject;
  });
}

// The caller names the shape it reads; the rendered YAML is checked field by field in the tests.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
function one<T extends K8sObject>(objs: K8sObject[], kind: string, name?: string): T {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0] as T;
}

/** The settings ConfigMap: its generated name carries a content hash (so a change rolls the Deployment). */
function settingsConfigMap(objs: K8sObject[]): K8sObject & { data: Record<string, string> } {
  const found = objs.filter((o) => o.kind === "ConfigMap" && /^sandbox-snapshot-controller-config-[a-z0-9]{10}$/.test(o.metadata?.name ?? ""));
  expect(found, "the settings ConfigMap, with a hash suffix").toHaveLength(1);
  return found[0] as K8sObject & { data: Record<string, string> };
}

function all(objs: K8sObject[], kind: string): K8sObject[] {
  return objs.filter((o) => o.kind === kind);
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

const missing = missingComponents(["kubectl"]);

describe.skipIf(missing)("deploy/ renders with kustomize", () => {
  const overlays = { "deploy/": render("deploy"), "deploy/overlays/production-example": render("deploy/overlays/production-example") };

  it("`kubectl kustomize deploy/` is the default overlay", () => {
    expect(overlays["deploy/"]).toEqual(render("deploy/overlays/default"));
  });

  for (const [dir, objs] of Object.entries(overlays)) {
    describe(dir, () => {
      const settingsMap = settingsConfigMap(objs);
      const settings = settingsMap.data;
      const config = loadConfig(settings);
      const deployment = one<Deployment>(objs, "Deployment", "sandbox-snapshot-controller");
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0] as Container;

      it("every object has apiVersion, kind and metadata.name, the right API group, and namespaced objects live in sandbox-snapshot-system", () => {
        expect(objs.length).toBeGreaterThan(10);
        const seen = new Set<string>();
        for (const o of objs) {
          const kind = o.kind ?? "";
          const known = KINDS[kind];
          expect(known, `unexpected kind ${kind}`).toBeDefined();
          expect(o.apiVersion, `${kind} apiVersion`).toBe(known?.apiVersion);
          const name = o.metadata?.name ?? "";
          expect(name, `${kind} name`).toMatch(DNS_NAME);
          expect(name.length).toBeLessThanOrEqual(253);
          if (known?.namespaced) expect(o.metadata?.namespace, `${kind}/${name} namespace`).toBe(NAMESPACE);
          else expect(o.metadata?.namespace, `${kind}/${name} is cluster-scoped`).toBeUndefined();
          const key = `${kind}/${o.metadata?.namespace ?? ""}/${name}`;
          expect(seen.has(key), `duplicate ${key}`).toBe(false);
          seen.add(key);
          for (const [k, v] of Object.entries(o.metadata?.labels ?? {})) {
            expect(typeof v, `label ${k} of ${key} is a string`).toBe("string");
          }
        }
      });

      it("installs the namespace, the CRD from crds/ and the CompositeController from metacontroller/", () => {
        one(objs, "Namespace", NAMESPACE);
        one(objs, "CustomResourceDefinition", "sandboxsnapshots.sandbox.opensandbox.io");
        one(objs, "CompositeController", "sandbox-snapshot-controller");
      });

      it("the settings ConfigMap holds only known settings, and they pass the controller's own validation", () => {
        for (const key of Object.keys(settings)) expect(SETTINGS, `unknown setting ${key}`).toContain(key);
        // The listen addresses are fixed by the Deployment (probes, Service and NetworkPolicy use them).
        for (const key of SETTINGS.filter((k) => !k.endsWith("_LISTEN_ADDRESS"))) expect(Object.keys(settings)).toContain(key);
        expect(config.registry).not.toMatch(/^localhost/);
      });

      it("runs the hook server as 2+ non-root replicas with a read-only root filesystem, no capabilities and RuntimeDefault seccomp", () => {
        expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
        expect(pod.securityContext?.runAsNonRoot).toBe(true);
        expect(pod.securityContext?.runAsUser).toBeGreaterThan(0);
        expect(pod.securityContext?.seccompProfile?.type).toBe("RuntimeDefault");
        expect(pod.containers).toHaveLength(1);
        const sc = container.securityContext;
        expect(sc?.readOnlyRootFilesystem).toBe(true);
        expect(sc?.allowPrivilegeEscalation).toBe(false);
        expect(sc?.runAsNonRoot).toBe(true);
        expect(sc?.privileged).not.toBe(true);
        expect(sc?.capabilities?.drop).toEqual(["ALL"]);
        expect(sc?.capabilities?.add).toBeUndefined();
        expect(sc?.seccompProfile?.type).toBe("RuntimeDefault");
        expect(container.resources?.requests?.cpu).toBeDefined();
        expect(container.resources?.requests?.memory).toBeDefined();
        expect(container.resources?.limits?.memory).toBeDefined();
        expect(pod.topologySpreadConstraints?.map((t) => t.topologyKey)).toEqual(
          expect.arrayContaining(["kubernetes.io/hostname", "topology.kubernetes.io/zone"]),
        );
        for (const t of pod.topologySpreadConstraints ?? []) {
          expect(matches(t.labelSelector?.matchLabels ?? {}, deployment.spec.template.metadata.labels)).toBe(true);
        }
        expect(matches(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels)).toBe(true);
      });

      it("probes /healthz and /readyz on the hook port 8080 and exposes metrics on 9090", () => {
        const port = (p: string | number | undefined): number | undefined =>
          typeof p === "number" ? p : container.ports?.find((x) => x.name === p)?.containerPort;
        expect(container.livenessProbe?.httpGet?.path).toBe("/healthz");
        expect(port(container.livenessProbe?.httpGet?.port)).toBe(8080);
        expect(container.readinessProbe?.httpGet?.path).toBe("/readyz");
        expect(port(container.readinessProbe?.httpGet?.port)).toBe(8080);
        expect(container.ports?.map((p) => p.containerPort).sort()).toEqual([8080, 9090]);
        const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
        const listen = loadConfig({ ...settings, ...env });
        expect(listen.hookListen.port).toBe(8080);
        expect(listen.metricsListen.port).toBe(9090);
      });

      it("reads the settings ConfigMap with envFrom and mounts the clean-up credential where REGISTRY_CLEANUP_DOCKER_CONFIG points", () => {
        expect(container.envFrom).toEqual([{ configMapRef: { name: settingsMap.metadata?.name } }]);
        const file = config.cleanupDockerConfig ?? "";
        const mount = container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
        expect(mount, `a volume mounted above ${file}`).toBeDefined();
        const volume = pod.volumes?.find((v) => v.name === mount?.name);
        expect(volume?.secret?.secretName).toBe("sandbox-snapshot-registry-cleanup");
        expect(volume?.secret?.items).toEqual([{ key: ".dockerconfigjson", path: file.slice((mount?.mountPath.length ?? 0) + 1) }]);
        // Writable scratch for a read-only root filesystem.
        expect(container.volumeMounts?.map((m) => m.mountPath)).toContain("/tmp");
        expect(pod.volumes?.some((v) => v.hostPath !== undefined)).toBe(false);
      });

      it("exposes the Service the CompositeController calls (port 80 to the hook port) and the metrics port", () => {
        const cc = one<K8sObject & { spec: { hooks: Record<string, { webhook: { service: { name: string; namespace: string; port: number } } }> } }>(
          objs,
          "CompositeController",
        );
        const svc = one<K8sObject & { spec: { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string | number }[] } }>(
          objs,
          "Service",
          "sandbox-snapshot-controller",
        );
        for (const hook of ["sync", "finalize", "customize"]) {
          const target = cc.spec.hooks[hook]?.webhook.service;
          expect(target, hook).toEqual({ name: svc.metadata?.name, namespace: NAMESPACE, port: 80, protocol: "http" });
        }
        expect(matches(svc.spec.selector, deployment.spec.template.metadata.labels)).toBe(true);
        const byPort = (n: number): number | undefined => {
          const t = svc.spec.ports.find((p) => p.port === n)?.targetPort;
          return typeof t === "number" ? t : container.ports?.find((p) => p.name === t)?.containerPort;
        };
        expect(byPort(80)).toBe(8080);
        expect(byPort(9090)).toBe(9090);
      });

      it("keeps a replica up through voluntary disruptions", () => {
        const pdb = one<K8sObject & { spec: { minAvailable?: number; selector: { matchLabels: Record<string, string> } } }>(objs, "PodDisruptionBudget");
        expect(pdb.spec.minAvailable).toBeGreaterThanOrEqual(1);
        expect(pdb.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
        expect(matches(pdb.spec.selector.matchLabels, deployment.spec.template.metadata.labels)).toBe(true);
      });

      it("lets only Metacontroller reach the hook port and Prometheus the metrics port, and opens DNS, API server and registry egress", () => {
        type Peer = { namespaceSelector?: { matchLabels?: Record<string, string> }; podSelector?: unknown; ipBlock?: unknown };
        type NpRule = { from?: Peer[]; to?: Peer[]; ports?: { port: number; protocol: string }[] };
        const np = one<K8sObject & { spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: NpRule[]; egress: NpRule[] } }>(
          objs,
          "NetworkPolicy",
        );
        expect(matches(np.spec.podSelector.matchLabels, deployment.spec.template.metadata.labels)).toBe(true);
        expect([...np.spec.policyTypes].sort()).toEqual(["Egress", "Ingress"]);
        for (const rule of np.spec.ingress) {
          expect(rule.from?.length, "every ingress rule names its peers").toBeGreaterThan(0);
          expect(rule.ports?.length, "every ingress rule names its ports").toBe(1);
        }
        const hookRule = np.spec.ingress.find((r) => r.ports?.[0]?.port === 8080);
        expect(hookRule?.from?.map((p) => p.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"])).toEqual(["metacontroller"]);
        const metricsRule = np.spec.ingress.find((r) => r.ports?.[0]?.port === 9090);
        expect(metricsRule?.from?.[0]?.namespaceSelector).toBeDefined();
        expect(np.spec.ingress).toHaveLength(2);
        const egressPorts = np.spec.egress.flatMap((r) => (r.ports ?? []).map((p) => `${p.protocol}/${p.port}`));
        expect(egressPorts).toEqual(expect.arrayContaining(["UDP/53", "TCP/53", "TCP/443", "TCP/6443"]));
        for (const rule of np.spec.egress) expect(rule.ports?.length, "egress is limited by port").toBeGreaterThan(0);
      });

      it("grants the hook server get on BatchSandboxes, SandboxSnapshots and the push Secret by name, get and list on Pods, create and list on Events — nothing else", () => {
        const role = one<K8sObject & { rules: Rule[] }>(objs, "ClusterRole", "sandbox-snapshot-controller");
        const flat = role.rules.flatMap((r) =>
          r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`))),
        );
        expect(flat.sort()).toEqual(
          ["sandbox.opensandbox.io/batchsandboxes:get", "sandbox.opensandbox.io/sandboxsnapshots:get", "agents.x-k8s.io/sandboxes:get", "/pods:get", "/pods:list", "/secrets:get", "/events:create", "/events:list"].sort(),
        );
        const secrets = role.rules.find((r) => r.resources.includes("secrets"));
        expect(config.pushSecret).toBeDefined();
        expect(secrets?.resourceNames).toEqual([config.pushSecret]);
        for (const r of role.rules) expect([...r.apiGroups, ...r.resources, ...r.verbs]).not.toContain("*");
        const binding = one<K8sObject & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] }>(
          objs,
          "ClusterRoleBinding",
        );
        expect(binding.roleRef).toMatchObject({ kind: "ClusterRole", name: role.metadata?.name });
        expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: pod.serviceAccountName, namespace: NAMESPACE }]);
        one(objs, "ServiceAccount", pod.serviceAccountName);
        // Metacontroller creates the Jobs, so the hook server has no Role anywhere else.
        expect(all(objs, "Role")).toEqual([]);
        expect(all(objs, "RoleBinding")).toEqual([]);
      });

      describe("admission policies", () => {
        const params = one<K8sObject & { data: Record<string, string> }>(objs, "ConfigMap", "sandbox-snapshot-admission-params").data;
        const policies = all(objs, "ValidatingAdmissionPolicy") as ValidatingAdmissionPolicy[];
        const bindings = all(objs, "ValidatingAdmissionPolicyBinding") as PolicyBinding[];

        it("take the committer image and containerd paths from the controller settings (configured once)", () => {
          expect(params.committerImage).toBe(config.committerImage);
          expect(params.containerdSocket).toBe(config.containerdSocket);
          expect(params.containerdRoot).toBe(config.containerdRoot);
          expect(params.metacontrollerUsername).toBe("system:serviceaccount:metacontroller:metacontroller");
          expect(params.jobControllerUsername).toBe("system:serviceaccount:kube-system:job-controller");
        });

        it("cover every pod and pod template a namespace user can create, and exec into commit pods, in sandbox namespaces, failing closed", () => {
          expect(policies.map((p) => p.metadata?.name).sort()).toEqual(["sandbox-snapshot-commit-pod-connect", "sandbox-snapshot-pod-security"]);
          const podSecurity = one<ValidatingAdmissionPolicy>(policies, "ValidatingAdmissionPolicy", "sandbox-snapshot-pod-security");
          const resources = podSecurity.spec.matchConstraints.resourceRules.flatMap((r) => r.resources);
          expect(resources.sort()).toEqual(
            ["cronjobs", "daemonsets", "deployments", "jobs", "pods", "pods/ephemeralcontainers", "replicasets", "replicationcontrollers", "statefulsets"].sort(),
          );
          for (const r of podSecurity.spec.matchConstraints.resourceRules) expect([...r.operations].sort()).toEqual(["CREATE", "UPDATE"]);
          expect(podSecurity.spec.paramKind).toEqual({ apiVersion: "v1", kind: "ConfigMap" });
          const connect = one<ValidatingAdmissionPolicy>(policies, "ValidatingAdmissionPolicy", "sandbox-snapshot-commit-pod-connect");
          expect(connect.spec.matchConstraints.resourceRules.flatMap((r) => r.resources).sort()).toEqual(["pods/attach", "pods/exec", "pods/portforward"]);
          for (const p of policies) {
            expect(p.spec.failurePolicy).toBe("Fail");
            for (const v of p.spec.validations) {
              expect(v.message ?? v.messageExpression, v.expression).toBeDefined();
            }
          }
          const text = JSON.stringify(podSecurity.spec);
          for (const needle of [LABEL_SNAPSHOT_NAME, LABEL_PRIVILEGED, "params.data.?committerImage", "params.data.?metacontrollerUsername", "params.data.?jobControllerUsername"]) {
            expect(text, `mentions ${needle}`).toContain(needle);
          }
          expect(bindings.map((b) => b.spec.policyName).sort()).toEqual(policies.map((p) => p.metadata?.name).sort());
          for (const b of bindings) {
            expect(b.spec.validationActions).toContain("Deny");
            if (b.spec.policyName === "sandbox-snapshot-pod-security") {
              expect(b.spec.paramRef).toEqual({ name: "sandbox-snapshot-admission-params", namespace: NAMESPACE, parameterNotFoundAction: "Deny" });
            }
            expect(b.spec.matchResources?.namespaceSelector?.matchLabels).toEqual({ [SANDBOX_NS_LABEL]: "true" });
          }
        });

        it("carry Pod Security baseline's lists as Kubernetes v1.35 defines them, and allow nothing beyond baseline by default", () => {
          const podSecurity = one<ValidatingAdmissionPolicy>(policies, "ValidatingAdmissionPolicy", "sandbox-snapshot-pod-security");
          const variable = (name: string): string => podSecurity.spec.variables?.find((v) => v.name === name)?.expression ?? "";
          const literals = (expr: string): string[] => [...expr.matchAll(/'([^']*)'/g)].map((m) => m[1] ?? "");
          // k8s.io/pod-security-admission v0.35 policy/check_capabilities_baseline.go, check_sysctls.go, check_seLinuxOptions.go
          expect(literals(variable("allowedCapabilities").split("+")[0] ?? "")).toEqual([
            "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
          ]);
          expect(literals(variable("safeSysctls")).sort()).toEqual(
            [
              "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
              "net.ipv4.ip_unprivileged_port_start", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
              "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem",
            ].sort(),
          );
          expect(literals(variable("selinuxTypes"))).toEqual(["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"]);
          // One validation per baseline control, each naming the offending fields in its message.
          for (const control of ["badPrivileged", "badHostPath", "badHostProcess", "badHostNamespaces", "badHostPorts", "badCapabilities", "badProcMount", "badSeccomp", "badAppArmor", "badSELinux", "badSysctls", "badHostProbes"]) {
            const v = podSecurity.spec.validations.find((x) => x.expression.includes(`size(variables.${control}) == 0`));
            expect(v, control).toBeDefined();
            expect(v?.messageExpression, control).toContain(`variables.${control}.join(', ')`);
            expect(variable(control), control).not.toBe("");
          }
          expect(params.extraCapabilities).toBe("");
          expect(params.extraCapabilitiesRequesters).toBe("");
        });

        it("would admit the commit and unpause Jobs this controller builds (image, labels, names, host paths)", () => {
          const snap: SandboxSnapshot = {
            apiVersion: "sandbox.opensandbox.io/v1alpha1",
            kind: "SandboxSnapshot",
            metadata: { name: "snap1", namespace: "sandboxes", uid: "u1" },
            spec: { podName: "p" },
          };
          const input = { snapshot: snap, podName: "p", nodeName: "n1", sourcePod: undefined };
          const jobs = [
            commitJob({ ...input, targets: [{ containerName: "c", imageUri: "r/p-c:snap-1" }] }, config),
            unpauseJob({ ...input, containers: ["c"] }, config),
          ];
          for (const built of jobs) {
            const job = built as unknown as { metadata: Meta; spec: { template: { metadata: Meta; spec: PodSpec } } };
            const spec = job.spec.template.spec;
            const name = job.metadata.name ?? "";
            expect([`${snap.metadata.name ?? ""}-commit`, `${snap.metadata.name ?? ""}-unpause`]).toContain(name);
            for (const labels of [job.metadata.labels, job.spec.template.metadata.labels]) {
              expect(labels?.[LABEL_SNAPSHOT_NAME]).toBe(snap.metadata.name);
              expect(labels?.[LABEL_PRIVILEGED]).toBe("true");
            }
            expect(spec.containers).toHaveLength(1);
            expect(spec.containers[0]?.image).toBe(params.committerImage);
            expect(spec.containers[0]?.command).toBeUndefined();
            expect(spec.containers[0]?.securityContext?.privileged).toBe(true);
            expect(spec.initContainers ?? []).toEqual([]);
            expect(spec.hostPID ?? false).toBe(false);
            expect(spec.hostNetwork ?? false).toBe(false);
            expect(spec.hostIPC ?? false).toBe(false);
            for (const v of spec.volumes ?? []) {
              if (v.hostPath) expect([params.containerdSocket, params.containerdRoot]).toContain(v.hostPath.path);
            }
          }
        });
      });
    });
  }

  it("the production example overrides the registry and pins the committer image the policies admit", () => {
    const objs = overlays["deploy/overlays/production-example"];
    const settings = settingsConfigMap(objs).data;
    expect(settings.SNAPSHOT_REGISTRY).not.toBe("registry.example.com/snapshots");
    expect(settings.SNAPSHOT_REPOSITORY_TEMPLATE).toContain("{namespace}");
    one(objs, "PriorityClass", settings.COMMIT_JOB_PRIORITY_CLASS);
  });
});
