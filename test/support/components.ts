// Real components for integration and cluster tests: installed by test/env/install-components.sh
// (as root, from Debian's packages). Locally a missing component skips loudly; with CI=true it fails.
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const inCI = process.env.CI === "true";

const installScript = fileURLToPath(new URL("../env/install-components.sh", import.meta.url));

let installed: boolean | undefined;

/** Runs the install script once per process; returns whether it succeeded. */
export function installComponents(): boolean {
  if (installed !== undefined) return installed;
  const r = spawnSync("bash", [installScript], { stdio: ["ignore", "inherit", "inherit"], timeout: 600_000 });
  installed = r.status === 0;
  return installed;
}

/** Absolute path of an executable on PATH (also /usr/sbin), or undefined. */
export function which(bin: string): string | undefined {
  try {
    const out = execFileSync("bash", ["-c", `PATH="$PATH:/usr/sbin:/sbin" command -v ${JSON.stringify(bin)}`], {
      encoding: "utf8",
    });
    return out.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Returns a reason to skip when a component is missing (loudly, on stderr), or throws with CI=true.
 * Use as: `const missing = missingComponents(["containerd", "runc"]); describe.skipIf(missing)(...)`.
 */
export function missingComponents(bins: string[]): string | undefined {
  const absent = bins.filter((b) => which(b) === undefined);
  if (absent.length > 0) installComponents();
  const still = bins.filter((b) => which(b) === undefined);
  if (still.length === 0) return undefined;
  const why = `missing test components: ${still.join(", ")} (run test/env/install-components.sh as root)`;
  if (inCI) throw new Error(`${why} — CI=true forbids skipping`);
  process.stderr.write(`\n!!! SKIPPING: ${why}\n\n`);
  return why;
}
