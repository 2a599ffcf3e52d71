#!/usr/bin/env bash
# Builds the cluster-test binaries from Go source through the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet
#                                                      (this module: k8s.io/kubernetes, pinned in go.mod)
#   metacontroller                                     (metacontroller/go.mod, pinned commit)
# into test/env/.cache/bin (gitignored). Idempotent: a component is skipped when its binaries exist and
# its stamp (hash of the pinning go.mod/go.sum) matches. Go's build and module caches stay in their
# default places (GOCACHE, GOMODCACHE) unless the caller sets them. Prints timings.
# Usage: build.sh [kube|metacontroller|all]   (default all). Exit status non-zero if any build failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CLUSTER_CACHE_DIR:-$here/../.cache}"
bin="$cache/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "cluster-build: 'go' not found on PATH — install Go >= 1.25 (https://go.dev/dl/) to build the cluster binaries" >&2
  exit 4
fi
mkdir -p "$bin" "$cache/stamps"
export GOFLAGS="${GOFLAGS:-} -mod=mod -buildvcs=false"
export CGO_ENABLED="${CGO_ENABLED:-0}"
# The checksum database behind the reachable module proxy has no entry for Metacontroller's repository
# (404); its hashes are pinned in metacontroller/go.sum instead, which go verifies on every download.
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/metacontroller/metacontroller"
jobs="${GO_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}"
what="${1:-all}"
rc=0

# Part of each stamp: change it when the build recipe (flags, outputs) changes.
recipe="go build -trimpath -ldflags=-s -w CGO_ENABLED=$CGO_ENABLED $(go env GOVERSION)"

log() { echo "cluster-build: $*" >&2; }

build() { # name dir stampfile-inputs... -- binaries... -- packages...  (extra -X flags in $xflags)
  local name="$1" dir="$2"; shift 2
  local inputs=() bins=() pkgs=()
  while [ "$1" != -- ]; do inputs+=("$dir/$1"); shift; done; shift
  while [ "$1" != -- ]; do bins+=("$1"); shift; done; shift
  pkgs=("$@")
  local want; want="$( (cat "${inputs[@]}"; echo "$recipe") | sha256sum | cut -c1-16)"
  local have=""; [ -f "$cache/stamps/$name" ] && have="$(cat "$cache/stamps/$name")"
  local missing=0
  for b in "${bins[@]}"; do [ -x "$bin/$b" ] || missing=1; done
  if [ "$missing" = 0 ] && [ "$want" = "$have" ]; then
    log "$name up to date (stamp $want) — skipped"
    return 0
  fi
  log "building $name (${bins[*]}) with go build -p $jobs …"
  local t0=$SECONDS
  local out="$cache/tmp-$name"; rm -rf "$out"; mkdir -p "$out"
  if (cd "$dir" && go build -p "$jobs" -trimpath -ldflags="-s -w ${xflags:-}" -o "$out/" "${pkgs[@]}"); then
    for b in "${bins[@]}"; do
      if [ ! -x "$out/$b" ]; then log "$name: expected binary $b not produced"; rc=1; return 1; fi
      mv -f "$out/$b" "$bin/$b"
    done
    rm -rf "$out"
    echo "$want" > "$cache/stamps/$name"
    log "$name built in $((SECONDS - t0))s"
  else
    log "$name FAILED after $((SECONDS - t0))s"
    rc=1
    return 1
  fi
}

t_all=$SECONDS
if [ "$what" = all ] || [ "$what" = kube ]; then
  # Version stamping as Kubernetes' own build does (hack/lib/version.sh), so `kubectl version` and
  # /version report the pinned release instead of v0.0.0-master.
  kv="$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
  kmaj="${kv#v}"; kmaj="${kmaj%%.*}"; kmin="${kv#v*.}"; kmin="${kmin%%.*}"
  xflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    xflags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=$kmaj -X $pkg.gitMinor=$kmin -X $pkg.gitTreeState=clean"
    xflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  recipe+=" $xflags"
  build kube "$here" go.mod go.sum -- kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet -- \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
fi
if [ "$what" = all ] || [ "$what" = metacontroller ]; then
  if [ -f "$here/metacontroller/go.mod" ]; then
    xflags=""
    build metacontroller "$here/metacontroller" go.mod go.sum -- metacontroller -- metacontroller
    # Metacontroller's own CRDs ship as YAML in its source (manifests/production/): take them from the
    # module cache, so they always match the binary.
    mcdir="$(cd "$here/metacontroller" && go list -m -f '{{if .Replace}}{{.Replace.Dir}}{{else}}{{.Dir}}{{end}}' metacontroller 2>/dev/null)"
    if [ -n "$mcdir" ] && [ -f "$mcdir/manifests/production/metacontroller-crds-v1.yaml" ]; then
      mkdir -p "$cache/metacontroller"
      cp -f "$mcdir/manifests/production/metacontroller-crds-v1.yaml" "$cache/metacontroller/crds.yaml"
      # Its upstream manifests (the test node installs Metacontroller in the cluster with them).
      echo "$mcdir" > "$cache/metacontroller/source-dir"
    else
      log "metacontroller: CRDs not found in the module cache ($mcdir)"; rc=1
    fi
  else
    log "metacontroller: no metacontroller/go.mod — not built"; rc=1
  fi
fi
log "done in $((SECONDS - t_all))s (binaries in $bin)"
exit $rc
