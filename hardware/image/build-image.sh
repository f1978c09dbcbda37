#!/bin/sh
# The flashable node image (`make image`): Debian 12 arm64 for the Raspberry Pi with the
# node's package installed and configured from hardware/.
#
#   build-image.sh DEB IMAGE [CACHE]     e.g. build-image.sh build/earwitness-node_0.1.0_arm64.deb \
#                                                               build/earwitness-node-arm64.img
#
# DEB: the node's arm64 package (make deb ARCH=arm64). CACHE (default build/arm64) keeps the
# operating system (base-rootfs.sh, made once: the slow part) and the partitions' files.
# No loop device and no mount: the boot partition is made by mkfs.vfat -C and filled by
# mcopy, the root by mkfs.ext4 -d, and sfdisk + dd put them into one disk image.
# Needs root, mmdebstrap, qemu-user-static, binfmt-support, dosfstools, mtools, fdisk, e2fsprogs.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
hw=$(cd "$here/.." && pwd)
die() { echo "build-image.sh: error: $*" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: build-image.sh DEB IMAGE [CACHE]"
deb=$1 img=$2 cache=${3:-$(dirname "$2")/arm64}
for tool in mkfs.vfat mcopy mkfs.ext4 sfdisk dpkg-deb; do
    command -v $tool >/dev/null || [ -x /usr/sbin/$tool ] || [ -x /sbin/$tool ] ||
        die "$tool is not installed (apt-get install dosfstools mtools e2fsprogs fdisk)"
done
[ -f "$deb" ] || die "no package $deb (make deb ARCH=arm64)"
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || die "$deb is not an arm64 package"

BOOT_LABEL=EWBOOT ROOT_LABEL=EWROOT  # raspi-firmware.default and the test name them too
BOOT_MIB=256
START_MIB=4              # the first partition's offset, as in Debian's Raspberry Pi images
ROOT_SPARE_MIB=384       # room on the root before first boot grows it to the card

base=$cache/image-rootfs
stage=$cache/image-stage
"$here/base-rootfs.sh" "$base"

echo "build-image.sh: the node package and its configuration" >&2
rm -rf "$stage"
cp -a "$base" "$stage"
rm -f "$stage/.complete"
cp "$deb" "$stage/tmp/node.deb"
"$hw/packaging/rootfs.sh" run "$stage" dpkg -i /tmp/node.deb >/dev/null
rm "$stage/tmp/node.deb"

e=$stage/etc
# Debian 12's arm64 kernel has no pps-gpio driver (CONFIG_PPS_CLIENT_GPIO is not set) and its
# raspi-firmware no device-tree overlays: there is no /dev/pps0, and chronyd stops at a refclock
# it cannot open. The image's chrony keeps NMEA and network time; the node times its pulses by
# the PPS in audio input 2 (timing.pps = "audio"), which needs no kernel driver.
sed 's|^refclock PPS |# no /dev/pps0 with Debian 12'"'"'s kernel (hardware/README.md): refclock PPS |' \
    "$hw/chrony/chrony.conf" > "$e/chrony/chrony.conf"
# Without the disable-bt overlay the GPIO14/15 UART is the mini UART, ttyS1 under Debian's
# kernel (ttyAMA0 is the Bluetooth's): the template first boot provisions from says so.
sed -i 's|^gps_port = "/dev/ttyAMA0"|gps_port = "/dev/ttyS1"|' "$stage/usr/share/earwitness/node.toml"
install -m 644 "$hw/gpsd/gpsd.default" "$e/default/gpsd"
install -m 644 "$here/sshd.conf" "$e/ssh/sshd_config.d/earwitness.conf"
install -D -m 644 "$here/wired.network" "$e/systemd/network/20-wired.network"
install -D -m 644 "$here/wait-online.conf" "$e/systemd/system/systemd-networkd-wait-online.service.d/earwitness.conf"
install -D -m 755 "$here/firstboot.sh" "$stage/usr/lib/earwitness/firstboot.sh"
install -m 644 "$here/earwitness-firstboot.service" "$here/earwitness-node.path" "$stage/lib/systemd/system/"
install -m 644 "$here/earwitness.toml.example" "$stage/usr/share/earwitness/"
printf 'LABEL=%s\t/\text4\tdefaults,noatime\t0\t1\nLABEL=%s\t/boot/firmware\tvfat\tdefaults,umask=0022\t0\t2\n' \
    "$ROOT_LABEL" "$BOOT_LABEL" > "$e/fstab"
echo earwitness > "$e/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tearwitness\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$e/hosts"
"$hw/packaging/rootfs.sh" run "$stage" systemctl enable --quiet systemd-networkd systemd-resolved ssh \
    earwitness-firstboot.service earwitness-node.path
ln -sf ../run/systemd/resolve/stub-resolv.conf "$e/resolv.conf"
# every node its own identity: ssh host keys (first boot makes them), machine id (systemd)
rm -f "$e"/ssh/ssh_host_* "$stage/var/lib/dbus/machine-id"
: > "$e/machine-id"
rm -rf "$stage/var/cache/apt/archives"/*.deb "$stage/var/lib/apt/lists"/*_Packages "$stage/etc/host-ca-certificates.crt"

# the boot partition: what raspi-firmware put in /boot/firmware (firmware, kernel, initrd,
# device trees, cmdline.txt, config.txt) plus the node's part of config.txt (UART, PPS)
bootfiles=$cache/image-boot
rm -rf "$bootfiles"
mv "$stage/boot/firmware" "$bootfiles"
mkdir "$stage/boot/firmware"
[ -f "$bootfiles/cmdline.txt" ] || die "raspi-firmware wrote no cmdline.txt into /boot/firmware"
grep -q "LABEL=$ROOT_LABEL" "$bootfiles/cmdline.txt" || die "cmdline.txt does not boot LABEL=$ROOT_LABEL"
# raspi-firmware writes config.txt anew at every kernel update, with raspi-firmware-custom appended
install -m 644 "$hw/boot/config.txt" "$e/default/raspi-firmware-custom"
{ echo; echo "# Inserted by /etc/default/raspi-firmware-custom"; cat "$hw/boot/config.txt"; } >> "$bootfiles/config.txt"

echo "build-image.sh: partitions and image" >&2
boot_fs=$cache/boot.vfat root_fs=$cache/root.ext4
rm -f "$boot_fs" "$root_fs"
mkfs.vfat -C -F 32 -n "$BOOT_LABEL" "$boot_fs" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$boot_fs" "$bootfiles"/* ::
used_mib=$(du -sm "$stage" | cut -f1)
root_mib=$((used_mib + used_mib / 4 + ROOT_SPARE_MIB))
truncate -s "${root_mib}M" "$root_fs"
mkfs.ext4 -q -F -L "$ROOT_LABEL" -d "$stage" "$root_fs"

mib=2048  # sectors of 512 bytes in a MiB
tmp=$img.tmp
rm -f "$tmp"
truncate -s $(((START_MIB + BOOT_MIB + root_mib) * 1024 * 1024)) "$tmp"
sfdisk --quiet "$tmp" <<TABLE
label: dos
unit: sectors
start=$((START_MIB * mib)), size=$((BOOT_MIB * mib)), type=c, bootable
start=$(((START_MIB + BOOT_MIB) * mib)), size=$((root_mib * mib)), type=83
TABLE
dd if="$boot_fs" of="$tmp" bs=1M seek=$START_MIB conv=notrunc,sparse status=none
dd if="$root_fs" of="$tmp" bs=1M seek=$((START_MIB + BOOT_MIB)) conv=notrunc,sparse status=none
rm -rf "$boot_fs" "$root_fs" "$stage" "$bootfiles"
mv "$tmp" "$img"
echo "$img"
