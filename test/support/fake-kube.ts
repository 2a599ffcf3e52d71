// The API access the hook server uses, for unit tests: an empty cluster (nothing found, no pods or
// Events listed, the push Secret present, Events accepted). Each test overrides what it is about.
import type { KubeAccess } from "../../src/server/kube.js";

export function emptyKube(overrides: Partial<KubeAccess> = {}): KubeAccess {
  return {
    getBatchSandbox: () => Promise.resolve(undefined),
    getAgentSandbox: () => Promise.resolve(undefined),
    getPod: () => Promise.resolve(undefined),
    getSandboxSnapshot: () => Promise.resolve(undefined),
    secretExists: () => Promise.resolve(true),
    listPods: () => Promise.resolve([]),
    listEvents: () => Promise.resolve([]),
    createEvent: () => Promise.resolve("created"),
    ...overrides,
  };
}
