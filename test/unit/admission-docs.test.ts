// docs/security.md shows the escape attempts of test/support/admission-attempts.ts — the rows the
// cluster test runs against a real API server — so the documented outcomes cannot drift from the
// tested ones. To refresh the docs after changing the rows: UPDATE_DOCS=1 npx vitest run --project unit test/unit/admission-docs.test.ts
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ESCAPE_ATTEMPTS, attemptsTable } from "../support/admission-attempts.js";

const DOC = fileURLToPath(new URL("../../docs/security.md", import.meta.url));
const BEGIN = "<!-- escape-attempts:begin (generated from test/support/admission-attempts.ts) -->";
const END = "<!-- escape-attempts:end -->";

describe("docs/security.md escape-attempt table", () => {
  it("is the table the cluster test runs", () => {
    const text = readFileSync(DOC, "utf8");
    const start = text.indexOf(BEGIN);
    const end = text.indexOf(END);
    expect(start, `docs/security.md lacks the marker ${BEGIN}`).toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(start);
    const want = `${BEGIN}\n${attemptsTable()}\n${END}`;
    const have = text.slice(start, end + END.length);
    if (have !== want && process.env.UPDATE_DOCS === "1") {
      writeFileSync(DOC, text.slice(0, start) + want + text.slice(end + END.length));
      return;
    }
    expect(have, "run with UPDATE_DOCS=1 to regenerate").toBe(want);
  });

  it("has a row per attempt, at least 20, each naming the field the denial names", () => {
    expect(ESCAPE_ATTEMPTS.length).toBeGreaterThanOrEqual(20);
    const rows = attemptsTable().split("\n").slice(2, 2 + ESCAPE_ATTEMPTS.length);
    expect(rows).toHaveLength(ESCAPE_ATTEMPTS.length);
    ESCAPE_ATTEMPTS.forEach((a, i) => {
      expect(rows[i]).toContain(`naming \`${a.names}\``);
    });
  });
});
