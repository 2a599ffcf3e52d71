import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatImageReference, manifestReference, parseImageReference, ReferenceError } from "../../src/registry/reference.js";

const D = `sha256:${"ab".repeat(32)}`;

describe("parseImageReference", () => {
  it.each([
    ["localhost:5000/snapshots/sbx-main:snap-gen3", { registry: "localhost:5000", repository: "snapshots/sbx-main", tag: "snap-gen3", digest: undefined }],
    [`registry.example.com/a/b/c@${D}`, { registry: "registry.example.com", repository: "a/b/c", tag: undefined, digest: D }],
    [`127.0.0.1:5000/x:tag@${D}`, { registry: "127.0.0.1:5000", repository: "x", tag: "tag", digest: D }],
    ["localhost/img", { registry: "localhost", repository: "img", tag: undefined, digest: undefined }],
    ["[::1]:5000/img:1", { registry: "[::1]:5000", repository: "img", tag: "1", digest: undefined }],
    ["busybox", { registry: "docker.io", repository: "library/busybox", tag: undefined, digest: undefined }],
    ["user/app:1.0", { registry: "docker.io", repository: "user/app", tag: "1.0", digest: undefined }],
    ["reg.io/a__b/c-d.e_f:V1_x.y-z", { registry: "reg.io", repository: "a__b/c-d.e_f", tag: "V1_x.y-z", digest: undefined }],
  ])("parses %s", (input, want) => {
    expect(parseImageReference(input)).toEqual(want);
  });

  it.each([
    ["", /empty/],
    [" reg.io/a", /whitespace/],
    ["reg.io/A/b", /repository/],
    ["reg.io/a//b", /repository/],
    ["reg.io/a:", /tag/],
    ["reg.io/a:-bad", /tag/],
    ["reg.io/a@sha256:abc", /digest/],
    [`reg.io/a@sha256:${"AB".repeat(32)}`, /digest/],
    ["reg.io/-a", /repository/],
    ["reg.io/a_/b", /repository/],
    [`reg.io/${"a".repeat(256)}`, /repository/],
  ])("rejects %j naming what is wrong", (input, why) => {
    expect(() => parseImageReference(input)).toThrow(ReferenceError);
    expect(() => parseImageReference(input)).toThrow(why);
  });

  it("keeps the error message short for a huge reference (it ends up in logs, status and usage errors)", () => {
    for (const input of [`${"r".repeat(70_000)}/x:y`, `reg.io/a:${"t".repeat(70_000)}`, `reg.io/${"a".repeat(70_000)}`]) {
      let message = "";
      try {
        parseImageReference(input);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/^invalid image reference/);
      expect(message.length).toBeLessThan(1_000);
    }
  });

  it("uses the digest, else the tag, else latest as the manifest reference", () => {
    expect(manifestReference(parseImageReference(`r.io/a:t@${D}`))).toBe(D);
    expect(manifestReference(parseImageReference("r.io/a:t"))).toBe("t");
    expect(manifestReference(parseImageReference("r.io/a"))).toBe("latest");
  });

  it("round-trips through formatImageReference", () => {
    const component = fc.stringMatching(/^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,4})?$/);
    fc.assert(
      fc.property(
        fc.constantFrom("r.io", "localhost:5000", "127.0.0.1:5000", "reg.example.com:443"),
        fc.array(component, { minLength: 1, maxLength: 4 }),
        fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/), { nil: undefined }),
        fc.option(fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`), { nil: undefined }),
        (registry, parts, tag, digest) => {
          const ref = { registry, repository: parts.join("/"), tag, digest };
          expect(parseImageReference(formatImageReference(ref))).toEqual(ref);
        },
      ),
    );
  });
});
