// Global setup of the integration project: makes sure the real components are installed.
// Filled in by the test bed (registry/containerd); kept as a no-op until then.
export default function setup(): void {}
