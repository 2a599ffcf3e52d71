import { defineConfig } from "vitest/config";

// Four layers: unit (pure, seconds), integration (real containerd + registry on loopback),
// cluster (real kube-apiserver + Metacontroller), node (a real single-node cluster: kubelet,
// containerd CRI, the product installed with kubectl apply -k). `npm test` runs all four.
export default defineConfig({
  test: {
    reporters: ["default", "./test/support/summary-reporter.ts"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          // A guard, not a speed target: some unit tests spawn tsx or kubectl, which takes many seconds on a
          // loaded 2-core machine (5 s, vitest's default, timed out there).
          testTimeout: 150_000,
          // Unit tests share no state between files (each makes its own temporary directories and
          // servers; runs in shuffled orders pass), so a worker loads the module graph once, not once
          // per file: on 2 cores the suite takes ~23 s instead of ~45 s, mostly spent re-importing.
          isolate: false,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/support/components-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "cluster",
          include: ["test/cluster/**/*.test.ts"],
          // Builds the cluster binaries from Go source when missing (cold: see docs/cluster-tests.md).
          globalSetup: ["test/support/cluster-setup.ts"],
          testTimeout: 300_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          // Builds the node's binaries and the images from source when missing (docs/cluster-tests.md).
          globalSetup: ["test/support/node-setup.ts"],
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
