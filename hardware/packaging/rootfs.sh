#!/bin/sh
# Debian 12 root filesystems of another architecture (arm64), run under qemu-user-static:
#
#   rootfs.sh make ARCH DIR PACKAGE,PACKAGE,...   mmdebstrap DIR once (DIR/.complete marks it done)
#   rootfs.sh run DIR COMMAND [ARG...]            COMMAND chrooted in DIR with /dev and /proc
#
# The apt mirror is this machine's own (APT_SOURCES, default its debian.sources), so the
# rootfs comes from wherever this machine's packages come from. A rootfs is cached: a second
# `make` with DIR complete does nothing. Needs root, mmdebstrap, qemu-user-static and
# binfmt-support (registered for ARCH).
set -eu

die() { echo "rootfs.sh: error: $*" >&2; exit 2; }
usage="usage: rootfs.sh make ARCH DIR PACKAGES | rootfs.sh run DIR COMMAND [ARG...]"
[ $# -ge 2 ] || die "$usage"
sources=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
suite=bookworm

case $1 in
make)
    [ $# -eq 4 ] || die "$usage"
    arch=$2 dir=$3 packages=$4
    [ -e "$dir/.complete" ] && exit 0
    [ -r "$sources" ] || die "no apt sources at $sources (set APT_SOURCES)"
    command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap qemu-user-static binfmt-support)"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"   # mmdebstrap needs the parent of its target (a fresh clone has no build/)
    mmdebstrap --quiet --arch="$arch" --variant=minbase --include="$packages" "$suite" "$dir" "$sources"
    # pip inside reaches the registry through whatever authority this machine trusts
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/host-ca-certificates.crt"
    touch "$dir/.complete"
    ;;
run)
    dir=$2
    shift 2
    [ $# -ge 1 ] || die "$usage"
    [ -e "$dir/.complete" ] || [ -x "$dir/bin/sh" ] || die "$dir is not a root filesystem"
    # a private mount namespace: the binds vanish with the command, whatever happens to it
    exec unshare --mount --propagation private sh -c '
        dir=$1; shift
        mount --rbind /dev "$dir/dev"
        mount -t proc proc "$dir/proc"
        exec chroot "$dir" env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 \
            PIP_CERT=/etc/host-ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"' rootfs "$dir" "$@"
    ;;
*) die "$usage" ;;
esac
