#!/usr/bin/env bash
# Installs the real components the integration and cluster suites run against, from Debian's
# packages. Idempotent and quick when everything is present. Needs root (CI and these machines run
# as root); without root it only reports what is missing.
set -euo pipefail
pkgs=(containerd runc docker-registry busybox-static etcd-server lua5.1 lua-cjson buildah skopeo zstd openssl apache2-utils faketime
      containernetworking-plugins iptables iproute2 gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "install-components: not root; missing Debian packages: ${missing[*]}" >&2
  exit 3
fi
echo "install-components: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || true
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
