// Platform matching as containerd does it (its `platforms` package, which the CRI plugin uses with
// the node's default platform), so the committer extends the very manifest containerd ran: names are
// normalised (x86_64 → amd64, aarch64 → arm64, armhf → arm/v7, an empty OS → linux), and a node
// also runs the platforms it is compatible with, in a fixed order of preference (amd64 then 386;
// arm64 then arm/v8…v5; arm/v7 then v6, v5). Pure.

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

/** A descriptor's `platform` as found in an index: any field may be missing. */
export interface RawPlatform {
  readonly os?: string | undefined;
  readonly architecture?: string | undefined;
  readonly variant?: string | undefined;
}

const GOARCH: Readonly<Record<string, string>> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };

/** The platform this process (the committer, on the node) runs, named as containerd names it. */
export function currentPlatform(): Platform {
  const arch = GOARCH[process.arch] ?? process.arch;
  if (arch !== "arm") return { os: "linux", architecture: arch };
  const v = (process.config.variables as Record<string, unknown>).arm_version;
  return { os: "linux", architecture: "arm", variant: typeof v === "string" || typeof v === "number" ? `v${v}` : "v7" };
}

export function normalizePlatform(p: RawPlatform): Required<Platform> {
  const os = (p.os ?? "").toLowerCase();
  let arch = (p.architecture ?? "").toLowerCase();
  let variant = (p.variant ?? "").toLowerCase();
  switch (arch) {
    case "i386":
      arch = "386";
      variant = "";
      break;
    case "x86_64":
    case "x86-64":
    case "amd64":
      arch = "amd64";
      if (variant === "v1") variant = "";
      break;
    case "aarch64":
    case "arm64":
      arch = "arm64";
      if (variant === "8" || variant === "v8") variant = "";
      break;
    case "armhf":
      arch = "arm";
      variant = "v7";
      break;
    case "armel":
      arch = "arm";
      variant = "v6";
      break;
    case "arm":
      if (variant === "" || variant === "7") variant = "v7";
      else if (variant === "5" || variant === "6" || variant === "8") variant = `v${variant}`;
      break;
  }
  return { os: os === "" ? "linux" : os === "macos" ? "darwin" : os, architecture: arch, variant };
}

/** The platforms a node of platform `p` runs, most preferred first (containerd's platformVector). */
export function compatiblePlatforms(p: Platform): Required<Platform>[] {
  const n = normalizePlatform(p);
  const out: Required<Platform>[] = [n];
  const version = Number.parseInt(n.variant.replace(/^v/, ""), 10);
  if (n.architecture === "amd64") {
    if (Number.isInteger(version) && version > 1) {
      for (let v = version - 1; v >= 1; v--) out.push({ ...n, variant: v === 1 ? "" : `v${v}` });
    }
    out.push({ os: n.os, architecture: "386", variant: "" });
  } else if (n.architecture === "arm") {
    if (Number.isInteger(version) && version > 5) for (let v = version - 1; v >= 5; v--) out.push({ ...n, variant: `v${v}` });
  } else if (n.architecture === "arm64") {
    out.push(...compatiblePlatforms({ os: n.os, architecture: "arm", variant: n.variant !== "" ? n.variant : "v8" }));
  }
  return out;
}

export interface PlatformMatcher {
  /** Index of the best compatible platform `p` equals, or -1 when the node cannot run it. */
  rank(p: RawPlatform): number;
  match(p: RawPlatform): boolean;
  /** Human-readable, for errors. */
  readonly describe: string;
}

/** containerd's `platforms.Only(p)`: matches the compatible platforms, ranks them in that order. */
export function only(p: Platform): PlatformMatcher {
  const vector = compatiblePlatforms(p);
  const rank = (raw: RawPlatform): number => {
    const x = normalizePlatform(raw);
    return vector.findIndex((v) => v.os === x.os && v.architecture === x.architecture && v.variant === x.variant);
  };
  return {
    rank,
    match: (raw) => rank(raw) !== -1,
    describe: format(vector[0] ?? normalizePlatform(p)),
  };
}

export function format(p: RawPlatform): string {
  return [p.os ?? "?", p.architecture ?? "?", ...(p.variant !== undefined && p.variant !== "" ? [p.variant] : [])].join("/");
}

/**
 * The index entry containerd runs, as its images.Manifest does: entries without a platform and
 * entries whose platform matches are candidates; matching ones come first, best match first (a stable
 * sort, so index order breaks ties), those without a platform last; only the first candidate is used.
 * An entry without a platform must then be checked against its config's os/architecture.
 */
export function pickIndexEntry<D extends { readonly platform?: RawPlatform | null | undefined }>(
  entries: readonly D[],
  m: PlatformMatcher,
): D | undefined {
  const candidates = entries
    .map((d, i) => ({ d, i, rank: d.platform ? m.rank(d.platform) : Infinity }))
    .filter((c) => c.rank !== -1);
  candidates.sort((a, b) => a.rank - b.rank || a.i - b.i);
  return candidates[0]?.d;
}
