#!/usr/bin/env bash
# Refreshes the containerd API protocol definitions kept in this directory from Debian's
# golang-github-containerd-containerd-dev package (containerd 1.6.x API), keeping only the services the
# committer uses and stripping gogoproto options (Go code-generation hints that protobufjs cannot load
# and that do not change the wire format).
set -euo pipefail
src=${1:-/usr/share/gocode/src/github.com/containerd/containerd/api}
here=$(cd "$(dirname "$0")" && pwd)
dst="$here/github.com/containerd/containerd/api"
rm -rf "$here/github.com"
files=()
while IFS= read -r f; do files+=("$f"); done < <(cd "$src" && ls services/{containers,tasks,snapshots,content,images,leases,diff,version}/v1/*.proto \
  types/{mount,metrics,descriptor}.proto types/task/task.proto)
for f in "${files[@]}"; do
  mkdir -p "$dst/$(dirname "$f")"
  sed -E \
    -e '/^import weak "gogoproto\/gogo.proto";/d' \
    -e '/^\s*option \(gogoproto\.[a-z_]+\) = [^;]+;/d' \
    -e 's/\s*\[\(gogoproto\.[^]]*\]//' \
    "$src/$f" >"$dst/$f"
done
if grep -rn gogoproto "$dst"; then echo "update.sh: gogoproto options left over" >&2; exit 1; fi
