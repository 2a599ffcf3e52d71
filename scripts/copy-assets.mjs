// Copies the non-TypeScript files the compiled program reads at run time (protocol definitions,
// JSON schemas) next to the compiled code, so `dist/` runs on its own.
import { cpSync, existsSync } from "node:fs";

const assets = [["src/containerd/proto", "dist/containerd/proto"]];
for (const [from, to] of assets) {
  if (existsSync(from)) cpSync(from, to, { recursive: true });
}
