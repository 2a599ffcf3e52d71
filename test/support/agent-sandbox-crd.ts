// Cluster-test support for kubernetes-sigs/agent-sandbox's Sandbox: a test CRD with just the fields
// this controller and the pause → resume walk-through use (not agent-sandbox's schema: its Go module
// is not served by the module proxy here), and the parts of agent-sandbox's controller the tests play
// — a Sandbox object, and its pod with the controller ownerReference agent-sandbox sets.
import type { KubernetesObject, V1Pod } from "@kubernetes/client-node";
import type { Cluster } from "./cluster.js";
import { plain, setPodStatus } from "./cluster-e2e.js";

export const AGENT_SANDBOX_GROUP = "agents.x-k8s.io";
export const AGENT_SANDBOX_VERSION = "v1beta1";
export const AGENT_SANDBOX_CRD = `sandboxes.${AGENT_SANDBOX_GROUP}`;

/** sandboxes.agents.x-k8s.io, v1beta1 only (its v1alpha1 needs agent-sandbox's conversion webhook). */
export const agentSandboxCrd = {
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: AGENT_SANDBOX_CRD },
  spec: {
    group: AGENT_SANDBOX_GROUP,
    scope: "Namespaced",
    names: { kind: "Sandbox", listKind: "SandboxList", plural: "sandboxes", singular: "sandbox", shortNames: ["sandbox"] },
    versions: [
      {
        name: AGENT_SANDBOX_VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: "object",
            required: ["spec"],
            properties: {
              spec: {
                type: "object",
                required: ["podTemplate"],
                properties: {
                  podTemplate: {
                    type: "object",
                    required: ["spec"],
                    properties: {
                      metadata: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
                      spec: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
                    },
                  },
                  volumeClaimTemplates: { type: "array", items: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
                  operatingMode: { type: "string", enum: ["Running", "Suspended"], default: "Running" },
                },
              },
              status: { type: "object", "x-kubernetes-preserve-unknown-fields": true },
            },
          },
        },
      },
    ],
  },
} as unknown as KubernetesObject;

export interface SandboxObject extends KubernetesObject {
  metadata: { name: string; namespace: string; uid?: string; annotations?: Record<string, string> };
  spec: { operatingMode?: "Running" | "Suspended"; podTemplate: { spec: { containers: { name: string; image: string; command?: string[] }[] } } };
}

export function sandboxObject(namespace: string, name: string, containers: { name: string; image: string }[]): SandboxObject {
  return {
    apiVersion: `${AGENT_SANDBOX_GROUP}/${AGENT_SANDBOX_VERSION}`,
    kind: "Sandbox",
    metadata: { name, namespace },
    spec: {
      operatingMode: "Running",
      podTemplate: { spec: { containers: containers.map((c) => ({ ...c, command: ["/bin/sleep", "100000"] })) } },
    },
  };
}

export async function getSandbox(c: Cluster, namespace: string, name: string): Promise<SandboxObject> {
  return (await c.custom.getNamespacedCustomObject({
    group: AGENT_SANDBOX_GROUP,
    version: AGENT_SANDBOX_VERSION,
    namespace,
    plural: "sandboxes",
    name,
  })) as SandboxObject;
}

/** The CRI label the committer matches against the source pod's UID (SNAPSHOT_POD_UID). */
export const CRI_POD_UID_LABEL = "io.kubernetes.pod.uid";

/**
 * agent-sandbox's part: the Sandbox's pod, with the containers of the Sandbox's pod template, bound to
 * `nodeName` (no status yet: start its containers with the pod's UID, then markPodRunning). `owned:
 * false` makes a look-alike pod any namespace user could create: same name, no controller
 * ownerReference.
 */
export async function createSandboxPod(c: Cluster, sb: SandboxObject, podName: string, nodeName: string, owned = true): Promise<V1Pod> {
  const namespace = sb.metadata.namespace;
  const ownerReferences = owned
    ? [{ apiVersion: sb.apiVersion, kind: "Sandbox", name: sb.metadata.name, uid: sb.metadata.uid, controller: true, blockOwnerDeletion: true }]
    : [];
  const containers = sb.spec.podTemplate.spec.containers;
  return c.core.createNamespacedPod({
    namespace,
    body: plain({ metadata: { name: podName, namespace, ownerReferences }, spec: { nodeName, containers } }),
  });
}

/** The kubelet's part: the pod is Running with these containerd container ids. */
export async function markPodRunning(c: Cluster, pod: V1Pod, containerIds: Record<string, string>): Promise<V1Pod> {
  const namespace = pod.metadata?.namespace ?? "";
  const name = pod.metadata?.name ?? "";
  const now = new Date();
  return setPodStatus(c, namespace, name, plain({
    phase: "Running",
    conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }],
    startTime: now,
    containerStatuses: (pod.spec?.containers ?? []).map((ct) => ({
      name: ct.name,
      image: ct.image ?? "",
      imageID: "",
      ready: true,
      restartCount: 0,
      started: true,
      containerID: `containerd://${containerIds[ct.name] ?? `${name}-${ct.name}`}`,
      state: { running: { startedAt: now } },
    })),
  }));
}

/** agent-sandbox's part when a Sandbox is suspended (or a pod replaced): the pod is deleted at once. */
export async function deletePodNow(c: Cluster, namespace: string, name: string): Promise<void> {
  await c.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 });
}
