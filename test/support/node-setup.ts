import { inCI, installComponents } from "./components.js";
import { buildClusterBinaries } from "./cluster.js";
import { buildImages } from "./cluster-install.js";

// Global setup of the node project: the Debian components, the cluster binaries (kubelet and
// kube-scheduler included) and the images built from source (test/env/images/build.sh; cached).
// Locally a failure makes the suite skip loudly; with CI=true it fails the run.
export default function setup(): void {
  if (!installComponents() && inCI) {
    throw new Error("test/env/install-components.sh failed; CI=true needs every real component");
  }
  const failed = buildClusterBinaries() ?? buildImages();
  if (failed !== undefined) {
    if (inCI) throw new Error(`${failed} — CI=true needs the test node`);
    process.stderr.write(`\n!!! ${failed}: the node tests will be skipped\n\n`);
  }
}
