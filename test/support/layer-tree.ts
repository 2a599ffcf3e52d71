// Applies OCI layers to an in-memory file tree (the image spec's changeset rules: `.wh.<name>` deletes,
// `.wh..wh..opq` hides what lower layers put in the directory, a non-directory replaces whatever was
// there), so layers from different producers can be compared by what they do, not by their bytes.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { readTar, type TarType } from "../../src/committer/tar.js";

export interface TreeNode {
  type: TarType;
  mode: number;
  uid: number;
  gid: number;
  /** Whole seconds (containerd's Diff service truncates). */
  mtime: number;
  /** sha256 of the content for files (hard links resolved), the target for symlinks. */
  content: string;
  xattrs: Record<string, string>;
  dev: string;
}

export type Tree = Map<string, TreeNode>;

function removeSubtree(tree: Tree, path: string): void {
  tree.delete(path);
  for (const k of [...tree.keys()]) if (k.startsWith(`${path}/`)) tree.delete(k);
}

export async function applyLayer(tree: Tree, layer: Buffer | AsyncIterable<Buffer>): Promise<Tree> {
  const src = Buffer.isBuffer(layer) ? (Readable.from([layer]) as AsyncIterable<Buffer>) : layer;
  const lower = new Set(tree.keys());
  for await (const { header: h, body } of readTar(src)) {
    const name = h.name.replace(/^\.\//, "").replace(/\/+$/, "");
    const slash = name.lastIndexOf("/");
    const dir = slash === -1 ? "" : name.slice(0, slash);
    const base = slash === -1 ? name : name.slice(slash + 1);
    const hash = createHash("sha256");
    for await (const c of body) hash.update(c);
    if (base === ".wh..wh..opq") {
      for (const k of [...tree.keys()]) if (k.startsWith(dir === "" ? "" : `${dir}/`) && k !== dir && lower.has(k)) tree.delete(k);
      continue;
    }
    if (base.startsWith(".wh.")) {
      removeSubtree(tree, dir === "" ? base.slice(4) : `${dir}/${base.slice(4)}`);
      continue;
    }
    const existing = tree.get(name);
    if (existing !== undefined && !(existing.type === "dir" && h.type === "dir")) removeSubtree(tree, name);
    const xattrs: Record<string, string> = {};
    for (const [k, v] of [...h.xattrs].sort(([a], [b]) => (a < b ? -1 : 1))) xattrs[k] = v.toString("base64");
    let node: TreeNode = {
      type: h.type,
      mode: h.mode & 0o7777,
      uid: h.uid,
      gid: h.gid,
      mtime: Math.floor(h.mtime),
      content: h.type === "file" ? hash.digest("hex") : h.type === "symlink" ? h.linkname : "",
      xattrs,
      dev: h.type === "char" || h.type === "block" ? `${h.devmajor}:${h.devminor}` : "",
    };
    if (h.type === "link") {
      const target = tree.get(h.linkname.replace(/^\.\//, ""));
      if (target === undefined) throw new Error(`hard link ${name} to missing ${h.linkname}`);
      node = { ...target };
    }
    tree.set(name, node);
  }
  return tree;
}

/** The tree as a sorted plain object (for toEqual diffs), with xattrs limited by `keepXattr`. */
export function flatten(tree: Tree, keepXattr: (name: string) => boolean = () => true): Record<string, TreeNode> {
  const out: Record<string, TreeNode> = {};
  for (const k of [...tree.keys()].sort()) {
    const n = tree.get(k) as TreeNode;
    out[k] = { ...n, xattrs: Object.fromEntries(Object.entries(n.xattrs).filter(([x]) => keepXattr(x))) };
  }
  return out;
}
