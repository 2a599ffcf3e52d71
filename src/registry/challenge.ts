// `WWW-Authenticate` challenges (RFC 7235): `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.

export interface AuthChallenge {
  /** Lowercased scheme: `bearer`, `basic`, … */
  readonly scheme: string;
  /** Parameters with lowercased names. */
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses a `WWW-Authenticate` header value into its challenges. Tolerates several challenges in one
 * header, quoted strings with backslash escapes, and token68 values (which are ignored).
 */
export function parseChallenges(header: string): AuthChallenge[] {
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let i = 0;
  const n = header.length;
  const skipWs = (): void => {
    while (i < n && (header[i] === " " || header[i] === "\t")) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(header[i] ?? "")) i++;
    return header.slice(start, i);
  };
  while (i < n) {
    skipWs();
    while (i < n && header[i] === ",") {
      i++;
      skipWs();
    }
    if (i >= n) break;
    const scheme = readToken();
    if (scheme === "") {
      i++; // skip an unexpected character
      continue;
    }
    const current = { scheme: scheme.toLowerCase(), params: {} as Record<string, string> };
    out.push(current);
    // auth-params: name=value pairs separated by commas, until the next scheme token.
    for (;;) {
      skipWs();
      const save = i;
      const name = readToken();
      skipWs();
      if (name === "" || header[i] !== "=") {
        i = save; // the next challenge's scheme
        break;
      }
      let j = i;
      while (j < n && header[j] === "=") j++;
      let k = j;
      while (k < n && (header[k] === " " || header[k] === "\t")) k++;
      if (j - i > 1 || k >= n || header[k] === ",") {
        i = j; // token68 (`abc==`): no parameters
        break;
      }
      i++; // '='
      skipWs();
      let value = "";
      if (header[i] === '"') {
        i++;
        while (i < n && header[i] !== '"') {
          if (header[i] === "\\" && i + 1 < n) i++;
          value += header.charAt(i);
          i++;
        }
        i++; // closing quote
      } else {
        // Lenient: an unquoted value runs to the next comma or space (realms are URLs in the wild).
        const start = i;
        while (i < n && header[i] !== "," && header[i] !== " " && header[i] !== "\t") i++;
        value = header.slice(start, i);
      }
      current.params[name.toLowerCase()] = value;
      skipWs();
      if (header[i] === ",") {
        i++;
        continue;
      }
      break;
    }
  }
  return out;
}

/** The Bearer challenge if there is one, else the Basic one, else undefined. */
export function pickChallenge(challenges: readonly AuthChallenge[]): AuthChallenge | undefined {
  return challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
}

/** A token scope: `repository:<name>:<actions>` (or `registry:catalog:*`). */
export interface Scope {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

export function repositoryScope(name: string, ...actions: string[]): Scope {
  return { type: "repository", name, actions };
}

export function formatScope(s: Scope): string {
  return `${s.type}:${s.name}:${[...s.actions].sort().join(",")}`;
}

/** Parses space-separated scopes from a challenge's `scope` parameter. */
export function parseScopes(value: string): Scope[] {
  const out: Scope[] = [];
  for (const part of value.split(" ")) {
    if (part === "") continue;
    const first = part.indexOf(":");
    const last = part.lastIndexOf(":");
    if (first < 0 || last === first) continue;
    out.push({ type: part.slice(0, first), name: part.slice(first + 1, last), actions: part.slice(last + 1).split(",").filter((a) => a !== "") });
  }
  return out;
}

/** Merges scopes for the same resource (union of actions) and returns them in a stable order. */
export function mergeScopes(scopes: readonly Scope[]): Scope[] {
  const byKey = new Map<string, Set<string>>();
  const first = new Map<string, Scope>();
  for (const s of scopes) {
    const key = `${s.type}:${s.name}`;
    const set = byKey.get(key) ?? new Set<string>();
    for (const a of s.actions) set.add(a);
    byKey.set(key, set);
    if (!first.has(key)) first.set(key, s);
  }
  return [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, actions]) => {
      const s = first.get(key);
      return { type: s?.type ?? "", name: s?.name ?? "", actions: [...actions].sort() };
    });
}

/** Cache key of a set of scopes. */
export function scopeKey(scopes: readonly Scope[]): string {
  return mergeScopes(scopes).map(formatScope).join(" ");
}
