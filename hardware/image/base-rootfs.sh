#!/bin/sh
# The node image's operating system, without the node: Debian 12 arm64 with Debian's
# Raspberry Pi firmware and kernel, its initramfs, and everything the node's .deb depends on.
#
#   base-rootfs.sh DIR        made once; build-image.sh copies it
#
# DIR/.complete holds a checksum of this script and raspi-firmware.default: DIR is made again
# only when they changed.
#
# This is the slow part of `make image` (tens of minutes under qemu-user-static), so it is
# kept apart from the node's package: a change to the node rebuilds only the image.
# The initramfs is built once, at the end: the kernel's and the firmware's install scripts
# would each build one (several minutes apiece under emulation), so update-initramfs is
# diverted to a stub while packages install.
# Needs root, mmdebstrap, qemu-user-static and binfmt-support; apt sources as rootfs.sh.
set -eu

die() { echo "base-rootfs.sh: error: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: base-rootfs.sh DIR"
dir=$1
here=$(cd "$(dirname "$0")" && pwd)
stamp=$(cat "$0" "$here/raspi-firmware.default" | sha256sum | cut -d' ' -f1)
[ "$(cat "$dir/.complete" 2>/dev/null)" = "$stamp" ] && exit 0
sources=${APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
[ -r "$sources" ] || die "no apt sources at $sources (set APT_SOURCES)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (apt-get install mmdebstrap qemu-user-static binfmt-support)"

# raspi-firmware (the Pi's boot loader blobs) is in Debian's non-free-firmware component
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed 's/^Components:.*/Components: main non-free-firmware/' "$sources" > "$work/debian.sources"

# the system, the firmware and kernel, the node package's dependencies (its control file's
# Depends), and what a headless node needs: ssh, DHCP networking, growing the root at first boot
packages="systemd,systemd-sysv,systemd-resolved,udev,dbus,kmod,iproute2,openssh-server,ca-certificates,tzdata"
packages="$packages,linux-image-arm64,raspi-firmware,initramfs-tools,e2fsprogs,dosfstools,cloud-guest-utils"
packages="$packages,python3,openssl,gpsd,chrony,pps-tools,libportaudio2,libsndfile1,adduser"

rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
mmdebstrap --quiet --arch=arm64 --variant=minbase --include="$packages" \
    --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
    --essential-hook='printf "#!/bin/sh\n# deferred: base-rootfs.sh builds the initramfs once at the end\nexit 0\n" > "$1/usr/sbin/update-initramfs"; chmod 755 "$1/usr/sbin/update-initramfs"' \
    --customize-hook="cp '$here/raspi-firmware.default' \"\$1/etc/default/raspi-firmware\"" \
    --customize-hook='rm "$1/usr/sbin/update-initramfs"; chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
    --customize-hook='chroot "$1" update-initramfs -c -k all' \
    bookworm "$dir" "$work/debian.sources"
echo "$stamp" > "$dir/.complete"
