import { inCI, installComponents } from "./components.js";

// Global setup of the integration project: installs the real components once, before any test file.
export default function setup(): void {
  if (!installComponents() && inCI) {
    throw new Error("test/env/install-components.sh failed; CI=true needs every real component");
  }
}
