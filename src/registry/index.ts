// Public surface of the OCI distribution client (used by the committer and the finalize hook).
export { RegistryClient } from "./client.js";
export type { BlobInfo, BlobSource, CallOptions, DeleteOutcome, FetchedManifest, ManifestInfo, PushBlobOptions, PushBlobResult, RegistryClientOptions } from "./client.js";
export { RegistryError, isRegistryError, Scrubber } from "./errors.js";
export type { RegistryErrorKind } from "./errors.js";
export { parseImageReference, formatImageReference, manifestReference, isDigest, ReferenceError } from "./reference.js";
export type { ImageReference } from "./reference.js";
export { parseDockerConfig, loadDockerConfig, credentialsFor, normalizeRegistryHost, DockerConfigError } from "./docker-config.js";
export type { DockerConfig, RegistryCredentials } from "./docker-config.js";
export { parseChallenges, pickChallenge } from "./challenge.js";
export type { AuthChallenge, Scope } from "./challenge.js";
export { DEFAULT_RETRY_POLICY } from "./retry.js";
export type { RetryPolicy } from "./retry.js";
export type { RegistryLogger } from "./log.js";
export { sha256Digest, digestFile, digestStream } from "./digest.js";
export * from "./media-types.js";
