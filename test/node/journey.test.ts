// The user's journey on a real single-node cluster (nothing plays the kubelet): the product installed
// with `kubectl apply -k deploy/overlays/test-node` from images built from source, Metacontroller in the
// cluster, a real kubelet running the sandbox pods and the commit Job's pod (the committer image, with
// its mounts, privileges and the real termination message), the kubelet pulling the snapshot images
// from the registry on resume. See docs/cluster-tests.md "The node suite".
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { V1Pod } from "@kubernetes/client-node";
import { missingClusterComponents, waitFor } from "../support/cluster.js";
import { COMMITTER_REPOSITORY, CONTROLLER_NAMESPACE, SANDBOX_IMAGE, SNAPSHOT_REGISTRY, missingImages, startInstalledCluster, type InstalledCluster } from "../support/cluster-install.js";
import { containerId, findFreezerCgroup, freezerState, podProcesses, running, whenFrozen, whenThawed } from "../support/node-cgroups.js";
import { REGISTRY_HOST } from "../support/node-host.js";

const missing = missingClusterComponents({ node: true }) ?? missingImages();
const NS = "sandboxes";

interface SnapshotStatus {
  phase?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
  containers?: { containerName: string; imageUri?: string; imageDigest?: string }[];
  freezeMilliseconds?: number;
}

describe.skipIf(missing)("the user's journey on a real node (kubelet, containerd CRI, installed product)", () => {
  let env: InstalledCluster | undefined;
  const e = (): InstalledCluster => {
    if (!env) throw new Error("environment not started");
    return env;
  };
  const kubectl = (args: string[], input?: string): Promise<string> => e().kubectl(args, input);
  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectl([...args, "-o", "json"])) as T;
  const sh = (pod: string, container: string, script: string): Promise<string> =>
    kubectl(["-n", NS, "exec", pod, "-c", container, "--", "sh", "-c", script]);

  beforeAll(async () => {
    env = await startInstalledCluster();
    // docs/quick-start.md step 3: the sandbox namespace.
    await kubectl(["create", "namespace", NS]);
    await kubectl(["label", "namespace", NS, "sandbox.opensandbox.io/sandbox-namespace=true"]);
    await kubectl(["label", "namespace", NS, "pod-security.kubernetes.io/enforce=privileged", "--overwrite"]);
    // The push credential (SNAPSHOT_PUSH_SECRET's default name); the test registry takes anonymous
    // pushes, so it is only ever sent if the registry asks.
    await kubectl(["-n", NS, "create", "secret", "docker-registry", "sandbox-snapshot-push", `--docker-server=${REGISTRY_HOST}`, "--docker-username=journey", "--docker-password=unused"]);
  }, 900_000);

  afterAll(async () => {
    await env?.stop();
  }, 120_000);

  const podManifest = (name: string, images: Record<string, string>, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: NS },
      spec: {
        terminationGracePeriodSeconds: 1,
        enableServiceLinks: false,
        automountServiceAccountToken: false,
        containers: Object.entries(images).map(([c, image]) => ({
          name: c,
          image,
          imagePullPolicy: image === SANDBOX_IMAGE ? "IfNotPresent" : "Always",
          command: ["/bin/sleep", "1000000"],
          ...extra,
        })),
      },
    });

  const waitRunning = async (name: string, timeoutMs = 120_000): Promise<V1Pod> =>
    waitFor(`pod ${name} Ready`, async () => {
      const p = await json<V1Pod>(["-n", NS, "get", "pod", name]);
      return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true ? p : undefined;
    }, timeoutMs, 500);

  const waitGone = async (kind: string, name: string): Promise<void> => {
    await waitFor(`${kind} ${name} gone`, async () => {
      const r = await e().cluster.kubectlAsync(["-n", NS, "get", kind, name, "--ignore-not-found", "-o", "name"]);
      return r.status === 0 && r.stdout.trim() === "";
    }, 120_000, 500);
  };

  const snapshot = async (name: string, spec: Record<string, unknown>): Promise<void> => {
    await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "SandboxSnapshot", metadata: { name, namespace: NS }, spec }));
  };

  const waitFinal = async (name: string, timeoutMs = 240_000): Promise<SnapshotStatus> =>
    waitFor(`snapshot ${name} final`, async () => {
      const s = (await json<{ status?: SnapshotStatus }>(["-n", NS, "get", "sandboxsnapshot", name])).status;
      return s?.phase === "Succeed" || s?.phase === "Failed" ? s : undefined;
    }, timeoutMs, 1_000);

  /** `host/repo:tag@sha256:…` (status imageUri, pinned by digest) → its parts. */
  const parseRef = (imageUri: string): { repo: string; tag: string; digest: string } => {
    const m = /^[^/]+\/(.+):([\w][\w.-]{0,127})@(sha256:[0-9a-f]{64})$/.exec(imageUri);
    if (!m) throw new Error(`not a digest-pinned reference with a tag: ${imageUri}`);
    return { repo: m[1] ?? "", tag: m[2] ?? "", digest: m[3] ?? "" };
  };
  const MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
  /** The registry's digest for the tag of a pinned reference (HEAD with the manifest types). */
  const registryDigest = async (imageUri: string): Promise<string | undefined> => {
    const { repo, tag } = parseRef(imageUri);
    const r = await fetch(`${e().registry.httpUrl}/v2/${repo}/manifests/${tag}`, { method: "HEAD", headers: { accept: MANIFEST_TYPES } });
    return r.status === 200 ? (r.headers.get("docker-content-digest") ?? undefined) : undefined;
  };
  const manifestStatus = async (imageUri: string, digest: string): Promise<number> => {
    const r = await fetch(`${e().registry.httpUrl}/v2/${parseRef(imageUri).repo}/manifests/${digest}`, { method: "HEAD", headers: { accept: MANIFEST_TYPES } });
    return r.status;
  };
  /** A verified container result: the pinned reference's digest is the status digest and the registry's. */
  const expectVerified = async (c: { containerName: string; imageUri?: string; imageDigest?: string }): Promise<void> => {
    expect(c.imageDigest, c.containerName).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(parseRef(c.imageUri ?? "").digest, c.containerName).toBe(c.imageDigest);
    expect(await registryDigest(c.imageUri ?? ""), c.containerName).toBe(c.imageDigest);
  };

  const images: Record<string, string> = {};
  const digests: Record<string, string> = {};

  it("a 2-container sandbox pod's changes → SandboxSnapshot → the commit Job's pod runs the committer image on the kubelet → Succeed with the registry's digests", async () => {
    await kubectl(["apply", "-f", "-"], podManifest("journey", { main: SANDBOX_IMAGE, side: SANDBOX_IMAGE }));
    await waitRunning("journey");
    // Writes, changes and deletes (a file, a directory replaced by a new one), through the kubelet's exec.
    await sh("journey", "main", [
      "echo created > /data/new.txt",
      "echo changed > /data/keep/a.txt",
      "rm /data/doomed.txt",
      "rm -rf /data/replace && mkdir -p /data/replace && echo fresh > /data/replace/fresh.txt",
      "ln -s keep/b.txt /data/link",
    ].join(" && "));
    await sh("journey", "side", "echo side > /etc/side.txt && rm /etc/base.txt && mkdir -p /var/cache/x && echo 1 > /var/cache/x/y");

    await snapshot("journey-1", { podName: "journey" });
    // The commit Job's pod is scheduled on the node and run by the kubelet with the committer image.
    const jobPod = await waitFor("commit Job pod", async () => {
      const list = await json<{ items: V1Pod[] }>(["-n", NS, "get", "pods", "-l", "job-name"]);
      // COMMITTER_IMAGE pinned by the digest the test registry serves it by (cluster-install.ts).
      return list.items.find((p) => p.spec?.containers.some((c) => c.image?.startsWith(`${COMMITTER_REPOSITORY}@sha256:`) === true));
    }, 120_000, 500);
    expect(jobPod.spec?.nodeName).toBe(e().cluster.nodeName);
    const status = await waitFinal("journey-1");
    if (status.phase !== "Succeed") throw new Error(`snapshot failed: ${JSON.stringify(status.conditions)}`);
    expect(status.containers?.map((c) => c.containerName).sort()).toEqual(["main", "side"]);
    for (const c of status.containers ?? []) {
      // The default tenant repository: {registry}/{namespace}/{source}/{container}.
      expect(c.imageUri, c.containerName).toContain(`${SNAPSHOT_REGISTRY}/${NS}/journey/${c.containerName}:`);
      await expectVerified(c);
      images[c.containerName] = c.imageUri ?? "";
      digests[c.containerName] = c.imageDigest ?? "";
    }
    // The sandbox ran on during the snapshot and runs on after it (the freeze ended).
    expect((await sh("journey", "main", "cat /data/new.txt")).trim()).toBe("created");
  });

  it("the sandbox pod deleted, a new pod from the snapshot images (pulled by the kubelet) shows exactly the changes", async () => {
    expect(Object.keys(images)).toHaveLength(2);
    await kubectl(["-n", NS, "delete", "pod", "journey", "--wait=true"]);
    await waitGone("pod", "journey");
    // The status references as they are: pinned by digest, so the kubelet pulls exactly these images.
    await kubectl(["apply", "-f", "-"], podManifest("journey-resumed", images));
    const pod = await waitRunning("journey-resumed", 180_000);
    for (const cs of pod.status?.containerStatuses ?? []) expect(cs.imageID, cs.name).toContain(digests[cs.name] ?? "none");
    const main = await sh("journey-resumed", "main", [
      "cat /data/new.txt /data/keep/a.txt /data/keep/b.txt",
      "ls /data/replace",
      "readlink /data/link",
      "test ! -e /data/doomed.txt && echo doomed-gone",
      "cat /etc/base.txt",
      "test ! -e /etc/side.txt && echo no-side",
    ].join("; "));
    expect(main.split("\n").filter(Boolean)).toEqual(["created", "changed", "b", "fresh.txt", "keep/b.txt", "doomed-gone", "from the base image", "no-side"]);
    const side = await sh("journey-resumed", "side", "cat /etc/side.txt /var/cache/x/y; test ! -e /etc/base.txt && echo base-gone; cat /data/keep/a.txt; test -e /data/new.txt || echo no-new");
    expect(side.split("\n").filter(Boolean)).toEqual(["side", "1", "base-gone", "a", "no-new"]);
    await kubectl(["-n", NS, "delete", "pod", "journey-resumed", "--wait=false"]);
  });

  it("the snapshot deleted → its manifests are gone from the registry", async () => {
    expect(Object.keys(digests)).toHaveLength(2);
    for (const [c, d] of Object.entries(digests)) expect(await manifestStatus(images[c] ?? "", d), c).toBe(200);
    await kubectl(["-n", NS, "delete", "sandboxsnapshot", "journey-1", "--wait=true", "--timeout=120s"]);
    await waitGone("sandboxsnapshot", "journey-1");
    for (const [c, d] of Object.entries(digests)) expect(await manifestStatus(images[c] ?? "", d), c).toBe(404);
  });

  it("the same through a BatchSandbox (test CRD; its pod <name>-0): owned snapshot → snap-gen tag, Retain; the resumed pod shows the change", async () => {
    const created = await kubectl(["create", "-o", "json", "-f", "-"], JSON.stringify({
      apiVersion: "sandbox.opensandbox.io/v1alpha1",
      kind: "BatchSandbox",
      metadata: { name: "bs1", namespace: NS },
      spec: { replicas: 1, template: { spec: { containers: [{ name: "sandbox", image: SANDBOX_IMAGE }] } } },
    }));
    const bs = JSON.parse(created) as { metadata: { uid: string; generation: number } };
    // What OpenSandbox's controller would create: the sandbox's pod, named <name>-0, labelled with it
    // and controlled by it (the controller trusts a BatchSandbox's pod only by that ownerReference).
    const podJson = (image: string): string => {
      const p = JSON.parse(podManifest("bs1-0", { sandbox: image })) as { metadata: Record<string, unknown> };
      p.metadata.labels = { "batch-sandbox.sandbox.opensandbox.io/name": "bs1" };
      p.metadata.ownerReferences = [{ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "BatchSandbox", name: "bs1", uid: bs.metadata.uid, controller: true, blockOwnerDeletion: true }];
      return JSON.stringify(p);
    };
    await kubectl(["apply", "-f", "-"], podJson(SANDBOX_IMAGE));
    await waitRunning("bs1-0");
    await sh("bs1-0", "sandbox", "echo paused-by-opensandbox > /root/state.txt");
    await kubectl(["apply", "-f", "-"], JSON.stringify({
      apiVersion: "sandbox.opensandbox.io/v1alpha1",
      kind: "SandboxSnapshot",
      metadata: {
        name: "bs1-pause",
        namespace: NS,
        ownerReferences: [{ apiVersion: "sandbox.opensandbox.io/v1alpha1", kind: "BatchSandbox", name: "bs1", uid: bs.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: { sandboxName: "bs1" },
    }));
    const status = await waitFinal("bs1-pause");
    expect(status.phase, JSON.stringify(status.conditions)).toBe("Succeed");
    const c = status.containers?.[0];
    expect(c?.imageUri).toMatch(new RegExp(`^${SNAPSHOT_REGISTRY.replaceAll(".", "\\.")}/${NS}/bs1/sandbox:snap-gen${String(bs.metadata.generation)}@sha256:[0-9a-f]{64}$`));
    if (c) await expectVerified(c);
    const full = await json<{ status?: { deletionPolicy?: string } }>(["-n", NS, "get", "sandboxsnapshot", "bs1-pause"]);
    expect(full.status?.deletionPolicy).toBe("Retain");
    await kubectl(["-n", NS, "delete", "pod", "bs1-0", "--wait=true"]);
    await waitGone("pod", "bs1-0");
    await kubectl(["apply", "-f", "-"], podJson(c?.imageUri ?? ""));
    await waitRunning("bs1-0", 180_000);
    expect((await sh("bs1-0", "sandbox", "cat /root/state.txt")).trim()).toBe("paused-by-opensandbox");
    await kubectl(["-n", NS, "delete", "pod", "bs1-0", "--wait=false"]);
  });

  it("registry down → Failed, the unpause Job runs, the sandbox runs again", async () => {
    await kubectl(["apply", "-f", "-"], podManifest("outage", { main: SANDBOX_IMAGE }));
    await waitRunning("outage");
    await sh("outage", "main", "echo before > /data/outage.txt");
    await e().registry.stop();
    try {
      await snapshot("outage-1", { podName: "outage" });
      const status = await waitFinal("outage-1", 600_000);
      expect(status.phase).toBe("Failed");
      expect(status.conditions?.find((c) => c.type === "Failed")?.status).toBe("True");
      await waitFor("ContainersResumed=True", async () => {
        const s = (await json<{ status?: SnapshotStatus }>(["-n", NS, "get", "sandboxsnapshot", "outage-1"])).status;
        // Reason Unpaused: the unpause Job's pod ran the committer image on the node and completed.
        return s?.conditions?.some((c) => c.type === "ContainersResumed" && c.status === "True" && c.reason === "Unpaused") === true;
      }, 180_000, 1_000);
    } finally {
      await e().registry.start();
    }
    // Not frozen: exec answers, and the container wrote on.
    expect((await sh("outage", "main", "echo after >> /data/outage.txt && cat /data/outage.txt")).trim()).toBe("before\nafter");
    const pod = await json<V1Pod>(["-n", NS, "get", "pod", "outage"]);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  });

  // Found a bug on 2026-12-01: the committer's result for 32 containers was longer than the 4096
  // bytes the kubelet keeps of a termination message (CommitResultInvalid). The compact result of
  // src/contract/commit-job.ts fits; this is the real kubelet's cut.
  it("a 32-container pod: one snapshot, 32 images, each with its own container's change", async () => {
    const names = Array.from({ length: 32 }, (_, i) => `c${String(i)}`);
    // Each container writes its own name at start, so no exec per container is needed.
    const manifest = JSON.parse(podManifest("wide", Object.fromEntries(names.map((n) => [n, SANDBOX_IMAGE])))) as {
      spec: { containers: { name: string; command: string[]; resources?: object }[] };
    };
    for (const c of manifest.spec.containers) {
      c.command = ["/bin/sh", "-c", `echo ${c.name} > /data/who.txt; exec /bin/sleep 1000000`];
      c.resources = { requests: { cpu: "1m", memory: "4Mi" } };
    }
    await kubectl(["apply", "-f", "-"], JSON.stringify(manifest));
    await waitRunning("wide", 300_000);
    await snapshot("wide-1", { podName: "wide" });
    const status = await waitFinal("wide-1", 600_000);
    expect(status.phase, JSON.stringify(status.conditions)).toBe("Succeed");
    expect(status.containers?.map((c) => c.containerName).sort()).toEqual([...names].sort());
    for (const c of status.containers ?? []) await expectVerified(c);
    // Two of them resumed: each image holds its own container's file.
    for (const n of ["c0", "c31"]) {
      const uri = status.containers?.find((c) => c.containerName === n)?.imageUri ?? "";
      await kubectl(["apply", "-f", "-"], podManifest(`wide-${n}`, { main: uri }));
      await waitRunning(`wide-${n}`, 180_000);
      expect((await sh(`wide-${n}`, "main", "cat /data/who.txt")).trim()).toBe(n);
      await kubectl(["-n", NS, "delete", "pod", `wide-${n}`, "--wait=false"]);
    }
    await kubectl(["-n", NS, "delete", "pod", "wide", "--wait=false"]);
  });

  // The commit pod killed while the sandbox is frozen. The host watches the sandbox container's freezer
  // cgroup and acts the moment it is FROZEN; the act counts only when the sandbox is still FROZEN after
  // it (a kill that lands after the resume is retried with a new snapshot, at most 3 times). A freeze
  // long enough to act in: 100,000 entries (the frozen walk stats every one) and a 128 MiB file the
  // sandbox appends to every second (read again under the freeze).
  let frozenCgroup = "";
  interface Act { readonly what: string; readonly frozenAfter: boolean }
  const settle = async (snap: string): Promise<{ status: SnapshotStatus; resumed: { reason?: string } }> => {
    const status = await waitFinal(snap, 300_000);
    const resumed = await waitFor(`${snap} ContainersResumed=True`, async () => {
      const s = (await json<{ status?: SnapshotStatus }>(["-n", NS, "get", "sandboxsnapshot", snap])).status;
      return s?.conditions?.find((c) => c.type === "ContainersResumed" && c.status === "True");
    }, 300_000, 1_000);
    return { status, resumed };
  };
  const killedMidFreeze = async (base: string, act: (commitPod: V1Pod) => Promise<Act>): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      const snap = `${base}-${String(attempt)}`;
      await snapshot(snap, { podName: "frozen" });
      const commitPod = await waitFor(`${snap} commit pod`, async () => {
        const list = await json<{ items: V1Pod[] }>(["-n", NS, "get", "pods", "-l", `job-name=${snap}-commit`]);
        return list.items[0];
      }, 120_000, 200);
      const uid = commitPod.metadata?.uid ?? "";
      let started = false;
      let done: Act | undefined;
      const watch = await whenFrozen(frozenCgroup, async () => {
        done = await act(commitPod);
        return done.what;
      }, () => {
        const n = podProcesses(uid).length;
        started ||= n > 0;
        return started && n === 0;
      }, 300_000);
      expect(watch.acted).not.toBe("");
      const thawedAt = await whenThawed(frozenCgroup, 900_000);
      const frozenMs = Math.round(thawedAt - watch.frozenAt);
      const { status, resumed } = await settle(snap);
      const failed = status.conditions?.find((c) => c.type === "Failed");
      process.stderr.write(`[journey] ${snap}: ${watch.acted}; ${done?.frozenAfter === true ? "still frozen after it" : "the freeze was over already"}; thawed ${String(frozenMs)} ms after the freeze was seen; ${String(status.phase)} ${String(failed?.reason)}: ${String(failed?.message).slice(0, 160)}; ContainersResumed ${String(resumed.reason)}\n`);
      if (done?.frozenAfter !== true) {
        if (attempt < 3) continue;
        throw new Error(`${base}: in 3 attempts the act never landed inside the freeze`);
      }
      expect(status.phase).toBe("Failed");
      expect(failed?.status).toBe("True");
      expect(failed?.reason, JSON.stringify(status.conditions)).toMatch(/^[A-Z][A-Za-z]+$/);
      // The bound docs/freeze-and-probes.md states: the commit Job's deadline plus the unpause Job's.
      const maps = await json<{ items: { metadata: { name: string }; data?: Record<string, string> }[] }>(["-n", CONTROLLER_NAMESPACE, "get", "configmaps"]);
      const config = maps.items.find((m) => m.metadata.name.startsWith("sandbox-snapshot-controller-config"));
      const deadline = Number(config?.data?.COMMIT_JOB_DEADLINE_SECONDS ?? 600);
      expect(frozenMs).toBeLessThan((deadline + 120) * 1000);
      // Running, not frozen: exec answers and the container writes on; it was not restarted.
      expect((await sh("frozen", "main", `echo ${snap} >> /data/after.txt && tail -n 1 /data/after.txt`)).trim()).toBe(snap);
      const pod = await json<V1Pod>(["-n", NS, "get", "pod", "frozen"]);
      expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
      return;
    }
  };

  it("the commit pod force-deleted mid-freeze (--force --grace-period=0) → the sandbox runs again, the snapshot is Failed with a reason", async () => {
    await kubectl(["apply", "-f", "-"], podManifest("frozen", { main: SANDBOX_IMAGE }, {
      command: ["/bin/sh", "-c", "while :; do test -e /data/big && echo x >> /data/big; sleep 1; done"],
    }));
    const pod = await waitRunning("frozen");
    await sh("frozen", "main", "mkdir -p /data/many && cd /data/many && i=0 && while [ $i -lt 100000 ]; do : > f$i; i=$((i+1)); done && dd if=/dev/zero of=/data/big bs=1M count=128 2>/dev/null && echo ok");
    const cid = containerId(pod.status?.containerStatuses?.[0]?.containerID);
    frozenCgroup = findFreezerCgroup(cid) ?? "";
    expect(frozenCgroup, `freezer cgroup of ${cid}`).not.toBe("");
    await killedMidFreeze("frozen-force", async (commitPod) => {
      const name = commitPod.metadata?.name ?? "";
      await kubectl(["-n", NS, "delete", "pod", name, "--force", "--grace-period=0", "--wait=false"]);
      // The API server took the deletion while the sandbox was frozen (the kubelet's SIGTERM follows).
      return { what: `kubectl delete pod ${name} --force --grace-period=0`, frozenAfter: freezerState(frozenCgroup) === "FROZEN" };
    });
  }, 1_800_000);

  it("the committer SIGKILLed mid-freeze → the unpause Job resumes the sandbox, the snapshot is Failed with a reason", async () => {
    expect(frozenCgroup).not.toBe("");
    await killedMidFreeze("frozen-kill", async (commitPod) => {
      const pids = podProcesses(commitPod.metadata?.uid ?? "");
      for (const pid of pids) process.kill(pid, "SIGKILL");
      // Once the committer is gone nothing but the controller's unpause Job can resume the sandbox.
      await waitFor("the killed processes gone", () => Promise.resolve(pids.every((pid) => !running(pid)) || undefined), 10_000, 5);
      return { what: `SIGKILL of the commit pod's processes ${pids.join(",")}`, frozenAfter: pids.length > 0 && freezerState(frozenCgroup) === "FROZEN" };
    });
    await kubectl(["-n", NS, "delete", "pod", "frozen", "--wait=false"]);
  }, 1_800_000);

  it("a sandbox with an exec liveness probe at default settings is not restarted by a snapshot", async () => {
    await kubectl(["apply", "-f", "-"], podManifest("probed", { main: SANDBOX_IMAGE }, { livenessProbe: { exec: { command: ["/bin/true"] } } }));
    await waitRunning("probed");
    await snapshot("probed-1", { podName: "probed" });
    const status = await waitFinal("probed-1");
    expect(status.phase, JSON.stringify(status.conditions)).toBe("Succeed");
    // Past a full default failure window (3 × 10 s) after the freeze: no restart, no failed probe.
    await new Promise((r) => setTimeout(r, 35_000));
    const pod = await json<V1Pod>(["-n", NS, "get", "pod", "probed"]);
    expect(pod.status?.containerStatuses?.[0]?.restartCount).toBe(0);
    const events = await kubectl(["-n", NS, "get", "events", "--field-selector", "involvedObject.name=probed", "-o", "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}"]);
    expect(events.split("\n")).not.toContain("Unhealthy");
  });
});
