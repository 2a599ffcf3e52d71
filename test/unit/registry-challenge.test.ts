import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatScope, mergeScopes, parseChallenges, parseScopes, pickChallenge, repositoryScope, scopeKey } from "../../src/registry/challenge.js";

describe("WWW-Authenticate parsing", () => {
  it("reads the Bearer challenge of a distribution registry", () => {
    const h = 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:snap/a:pull,push"';
    expect(parseChallenges(h)).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.example.com/token", service: "registry.example.com", scope: "repository:snap/a:pull,push" } },
    ]);
  });

  it("reads a Basic challenge, case-insensitively", () => {
    expect(parseChallenges('BASIC Realm="Registry Realm"')).toEqual([{ scheme: "basic", params: { realm: "Registry Realm" } }]);
  });

  it("handles several challenges, spaces, unquoted values and escapes", () => {
    const h = 'Basic realm="a \\"quoted\\" realm" , Bearer realm=https://t.example/token, service = reg , error="insufficient_scope"';
    const c = parseChallenges(h);
    expect(c).toEqual([
      { scheme: "basic", params: { realm: 'a "quoted" realm' } },
      { scheme: "bearer", params: { realm: "https://t.example/token", service: "reg", error: "insufficient_scope" } },
    ]);
    expect(pickChallenge(c)?.scheme).toBe("bearer");
  });

  it("never throws and always terminates, whatever the header", () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom("B", "e", "a", "r", " ", ",", "=", '"', "\\", "r", "l", "m", "\t", "x") , maxLength: 60 }), (h) => {
        const out = parseChallenges(h);
        expect(Array.isArray(out)).toBe(true);
      }),
    );
  });

  it("tolerates token68 values and garbage without throwing", () => {
    expect(parseChallenges("Negotiate abc==")).toEqual([{ scheme: "negotiate", params: {} }]);
    expect(() => parseChallenges('Bearer realm="unterminated')).not.toThrow();
    expect(parseChallenges("")).toEqual([]);
    expect(pickChallenge(parseChallenges("Negotiate"))).toBeUndefined();
  });
});

describe("token scopes", () => {
  it("parses and formats scopes, including names with colons-free paths and several scopes", () => {
    expect(parseScopes("repository:a/b:pull,push repository:c:pull")).toEqual([
      { type: "repository", name: "a/b", actions: ["pull", "push"] },
      { type: "repository", name: "c", actions: ["pull"] },
    ]);
    expect(formatScope(repositoryScope("a/b", "push", "pull"))).toBe("repository:a/b:pull,push");
  });

  it("merges actions per resource so one cache key serves one set of rights", () => {
    const merged = mergeScopes([repositoryScope("b", "pull"), repositoryScope("a", "push"), repositoryScope("b", "push", "pull")]);
    expect(merged.map(formatScope)).toEqual(["repository:a:push", "repository:b:pull,push"]);
    expect(scopeKey([repositoryScope("x", "push", "pull")])).toBe(scopeKey([repositoryScope("x", "pull"), repositoryScope("x", "push")]));
  });
});
