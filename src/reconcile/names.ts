// Names, labels and annotations shared with OpenSandbox and the admission policies (DESIGN.md
// "Compatibility facts"). Changing one of these breaks compatibility.

import { GROUP } from "../contract/commit-job.js";

export { ANNOTATION_SNAPSHOT_NAME, ANNOTATION_SNAPSHOT_NAMESPACE, ANNOTATION_SNAPSHOT_UID, GROUP } from "../contract/commit-job.js";
export const API_VERSION = `${GROUP}/v1alpha1`;
export const BATCH_SANDBOX_KIND = "BatchSandbox";
export const BATCH_SANDBOX_RESOURCE = "batchsandboxes";
export const SNAPSHOT_RESOURCE = "sandboxsnapshots";

export const LABEL_SNAPSHOT_NAME = `${GROUP}/sandbox-snapshot-name`;
export const LABEL_PRIVILEGED = `${GROUP}/privileged-node-access`;
export const LABEL_BATCH_SANDBOX = `batch-sandbox.${GROUP}/name`;
export const LABEL_JOB_NAME = "job-name";
export const LABEL_JOB_NAME_NEW = "batch.kubernetes.io/job-name";
/** Set by the Job controller on its pods; the Job's generated selector uses the second form. */
export const LABEL_CONTROLLER_UID = "controller-uid";
export const LABEL_CONTROLLER_UID_NEW = "batch.kubernetes.io/controller-uid";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const LABEL_COMPONENT = "app.kubernetes.io/component";
export const MANAGED_BY = "sandbox-snapshot-controller";

export const ANNOTATION_ALLOC_STATUS = `${GROUP}/alloc-status`;

export const MAX_SNAPSHOT_NAME = 55;
export const commitJobName = (snapshot: string): string => `${snapshot}-commit`;
export const unpauseJobName = (snapshot: string): string => `${snapshot}-unpause`;
