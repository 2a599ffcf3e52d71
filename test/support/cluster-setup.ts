import { inCI, installComponents } from "./components.js";
import { buildClusterBinaries } from "./cluster.js";

// Global setup of the cluster project: installs the Debian components (etcd, openssl) and builds
// kube-apiserver, kube-controller-manager, kubectl and Metacontroller from Go source (cached in
// test/env/.cache; about a second when up to date). Locally a failure makes the suite skip loudly;
// with CI=true it fails the run.
export default function setup(): void {
  if (!installComponents() && inCI) {
    throw new Error("test/env/install-components.sh failed; CI=true needs every real component");
  }
  const failed = buildClusterBinaries();
  if (failed !== undefined) {
    if (inCI) throw new Error(`${failed} — CI=true needs the cluster binaries`);
    process.stderr.write(`\n!!! ${failed}: the cluster tests will be skipped\n\n`);
  }
}
