// The hook server's registry clients (image verification and clean-up): the controller-wide
// credentials (REGISTRY_CLEANUP_DOCKER_CONFIG), one client per registry host, made on first use.
import type { Logger } from "pino";
import type { ControllerConfig } from "../config/config.js";
import { credentialsFor, type DockerConfig, RegistryClient, type RetryPolicy } from "../registry/index.js";

export interface ControllerClientSettings {
  /** Per HTTP attempt. */
  readonly timeoutMs: number;
  /** Longest back-off between the (two) attempts. */
  readonly maxDelayMs: number;
  readonly retry?: Partial<RetryPolicy>;
  readonly log?: Logger;
}

/** Makes a registry client with the controller-wide credentials. */
export function controllerClient(config: ControllerConfig, dockerConfig: DockerConfig | undefined, s: ControllerClientSettings): (registry: string) => RegistryClient {
  return (registry) =>
    new RegistryClient({
      registry,
      insecure: config.registryInsecure,
      ...(dockerConfig !== undefined ? { credentials: credentialsFor(dockerConfig, registry) ?? {} } : {}),
      timeoutMs: s.timeoutMs,
      retry: { maxAttempts: 2, initialDelayMs: 100, maxDelayMs: s.maxDelayMs, ...s.retry },
      ...(s.log !== undefined ? { logger: s.log } : {}),
    });
}

/** One client per registry host, made by `make` on first use. */
export function perRegistry<C>(make: (registry: string) => C): (registry: string) => C {
  const clients = new Map<string, C>();
  return (registry) => {
    let c = clients.get(registry);
    if (c === undefined) {
      c = make(registry);
      clients.set(registry, c);
    }
    return c;
  };
}
