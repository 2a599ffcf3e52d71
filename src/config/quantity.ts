// Kubernetes byte quantities (`10Gi`, `500M`, `1073741824`), shared by the controller's settings and
// the committer's environment.

const UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** Bytes, or undefined when `v` is not a quantity. Fractions (`1.5Gi`) only when allowed. */
export function parseBytes(v: string, allowFraction = false): number | undefined {
  const m = (allowFraction ? /^(\d+(?:\.\d+)?)(|k|M|G|T|Ki|Mi|Gi|Ti)$/ : /^(\d+)(|k|M|G|T|Ki|Mi|Gi|Ti)$/).exec(v.trim());
  if (m === null) return undefined;
  const n = Math.floor(Number(m[1]) * (UNITS[m[2] ?? ""] ?? NaN));
  return Number.isSafeInteger(n) ? n : undefined;
}
