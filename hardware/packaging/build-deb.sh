#!/bin/sh
# Build the node's Debian package: earwitness-node_VERSION_ARCH.deb in OUTDIR.
#
#   build-deb.sh [--no-venv] OUTDIR
#
# Build on the target's OS and architecture (a Pi, or a Debian 12 arm64 container): the venv
# in /opt/earwitness/.venv holds compiled code (numpy, the cffi extension) and is tied to
# this python3's minor version, which the package then depends on.
# --no-venv: the package without /opt/earwitness (seconds instead of minutes): to check the
# layout, or for a site that installs the venv its own way.
# PYTHON (default /usr/bin/python3, the distribution's, which the package depends on) makes the venv.
# VENV_FROM=DIR DEB_ARCH=ARCH: package the venv DIR, already built at /opt/earwitness/.venv in a
# root filesystem of ARCH (cross-deb.sh does that under qemu), instead of building one here.
set -eu

repo=$(cd "$(dirname "$0")/../.." && pwd)
hw=$repo/hardware
with_venv=1
case ${1:-} in --no-venv) with_venv=0; shift ;; esac
[ $# -eq 1 ] || { echo "build-deb.sh: error: usage: build-deb.sh [--no-venv] OUTDIR" >&2; exit 2; }
out=$1

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/pyproject.toml" | head -n 1)
[ -n "$version" ] || { echo "build-deb.sh: error: no version in $repo/pyproject.toml" >&2; exit 2; }
arch=${DEB_ARCH:-$(dpkg --print-architecture)}
if [ -n "${VENV_FROM:-}" ]; then
    # the venv's own record of the python it was made with: "version = 3.11.2"
    py=$(sed -n 's/^version *= *\([0-9]*\.[0-9]*\).*/\1/p' "$VENV_FROM/pyvenv.cfg")
    [ -n "$py" ] || { echo "build-deb.sh: error: $VENV_FROM/pyvenv.cfg names no python version" >&2; exit 2; }
else
    python=${PYTHON:-/usr/bin/python3}
    py=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
fi
py_next=${py%.*}.$((${py#*.} + 1))

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
venv=/opt/earwitness/.venv

install -d "$root/DEBIAN" "$root/lib/systemd/system" "$root/lib/udev/rules.d" "$root/usr/sbin" \
    "$root/usr/share/earwitness" "$root/usr/share/doc/earwitness-node"
install -m 644 "$hw/node/earwitness-node.service" "$root/lib/systemd/system/"
install -m 644 "$hw/udev/90-earwitness.rules" "$root/lib/udev/rules.d/"
install -m 755 "$hw/provision.sh" "$root/usr/sbin/earwitness-provision"
# Reference configs: the admin copies them (README, "Operating system setup"); installing
# them over chrony's or the firmware's own files is not a package's call.
install -m 644 "$hw/node/node.toml" "$hw/chrony/chrony.conf" "$hw/gpsd/gpsd.default" \
    "$hw/boot/config.txt" "$root/usr/share/earwitness/"
install -m 644 "$hw/README.md" "$root/usr/share/doc/earwitness-node/"

depends="openssl, gpsd, chrony, pps-tools, libportaudio2, libsndfile1, adduser"
if [ $with_venv = 1 ]; then
    if [ -n "${VENV_FROM:-}" ]; then
        install -d "$root/opt/earwitness"
        cp -a "$VENV_FROM" "$root$venv"
    else
        "$python" -m venv "$root$venv"
        "$root$venv/bin/pip" install --quiet --no-cache-dir "$repo"
    fi
    # A venv's scripts name it by absolute path: point them at where it will be installed.
    find "$root$venv/bin" "$root$venv/pyvenv.cfg" -type f -exec grep -lI "$root" {} + | while read -r f; do
        sed -i "s|$root$venv|$venv|g" "$f"
    done
    find "$root$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
    depends="python3 (>= $py), python3 (<< $py_next), $depends"
fi

cat > "$root/DEBIAN/control" <<CONTROL
Package: earwitness-node
Version: $version
Architecture: $arch
Maintainer: Earwitness developers <earwitness@example.org>
Section: net
Priority: optional
Depends: $depends
Description: Earwitness acoustic gunshot detection sensor node
 Captures audio, detects impulses, times them with GPS PPS and publishes signed
 pulses over MQTT/TLS. Provision with earwitness-provision, then
 systemctl enable --now earwitness-node.
CONTROL

cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    getent passwd earwitness >/dev/null || adduser --system --group --home /var/lib/earwitness --no-create-home earwitness
    usermod -a -G audio,dialout earwitness
    install -d -o earwitness -g earwitness -m 750 /var/lib/earwitness
    install -d -m 755 /etc/earwitness
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    udevadm control --reload-rules 2>/dev/null || true
    # not enabled here: the node needs its keys and certificate first (earwitness-provision)
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet earwitness-node; then systemctl restart earwitness-node; fi
fi
exit 0
POSTINST

cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then systemctl disable --now earwitness-node || true; fi
exit 0
PRERM
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"

mkdir -p "$out"
deb=$out/earwitness-node_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
