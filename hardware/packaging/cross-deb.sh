#!/bin/sh
# Build the node's .deb for another architecture on this machine:
#
#   cross-deb.sh ARCH OUTDIR [CACHE]          e.g. cross-deb.sh arm64 build
#
# The venv (numpy, the cffi extension compiled by that architecture's gcc) is made at
# /opt/earwitness/.venv inside a Debian 12 ARCH rootfs run under qemu-user-static
# (rootfs.sh; cached in CACHE, default build/ARCH, so a second run only redoes the venv);
# build-deb.sh then packages it natively (dpkg-deb under emulation is several times slower).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ $# -ge 2 ] && [ $# -le 3 ] || { echo "cross-deb.sh: error: usage: cross-deb.sh ARCH OUTDIR [CACHE]" >&2; exit 2; }
arch=$1 out=$2 cache=${3:-$repo/build/$1}
rootfs=$cache/build-rootfs
# what building the venv needs: the python the package will depend on, a C compiler for the extension
"$here/rootfs.sh" make "$arch" "$rootfs" python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates

# the sources only: tracked and new files, no venv, build products or caches
rm -rf "$rootfs/src" "$rootfs/opt/earwitness"
mkdir -p "$rootfs/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - --ignore-failed-read) \
    | tar -xf - -C "$rootfs/src"
"$here/rootfs.sh" run "$rootfs" sh -ec '
    python3 -m venv /opt/earwitness/.venv
    /opt/earwitness/.venv/bin/pip install --quiet --no-cache-dir /src
    /opt/earwitness/.venv/bin/python -c "import earwitness._native"'
VENV_FROM=$rootfs/opt/earwitness/.venv DEB_ARCH=$arch "$here/build-deb.sh" "$out"
