#!/bin/sh
# earwitness-firstboot (installed as /usr/lib/earwitness/firstboot.sh, run by
# earwitness-firstboot.service at every boot; each step does only what is not yet done):
#
# 1. ssh host keys of this node's own (the image carries none);
# 2. the root partition grown to the card, once;
# 3. provisioning from earwitness.toml on the boot partition (node, site, broker, ca,
#    ssh_authorized_keys; see earwitness.toml.example): earwitness-provision makes the
#    node's signing key, TLS key and certificate request and its node.toml (from node.toml on
#    the boot partition when there is one, else the package's template); the public key and
#    the request are printed on the console and the request copied to the boot partition as
#    NODE.csr; the file is renamed earwitness.toml.done (a new earwitness.toml provisions
#    again, keeping the keys);
# 4. the certificate: node.pem on the boot partition (signed from NODE.csr by the site CA)
#    is checked against the node's TLS key and installed as /etc/earwitness/node.pem;
#    earwitness-node.path starts the node once that file is there.
set -eu

boot=${EARWITNESS_BOOT:-/boot/firmware}
etc=${EARWITNESS_ETC:-/etc/earwitness}
conf=$boot/earwitness.toml
say() { echo "earwitness-firstboot: $*"; }

ssh-keygen -A >/dev/null  # makes only the missing ones

grow_root() {
    [ -e /var/lib/earwitness-firstboot/grown ] && return 0
    part=$(findmnt -no SOURCE /)
    disk=/dev/$(lsblk -no PKNAME "$part")
    number=$(cat "/sys/class/block/${part#/dev/}/partition")
    # NOCHANGE (exit 1) when the partition already fills the disk
    if growpart "$disk" "$number" >/dev/null; then
        resize2fs "$part" >/dev/null 2>&1 && say "root file system grown to $(df -h --output=size / | tail -n 1 | tr -d ' ')"
    fi
    mkdir -p /var/lib/earwitness-firstboot && touch /var/lib/earwitness-firstboot/grown
}
grow_root || say "could not grow the root partition (it keeps the image's size)"

# The provisioning file's values, checked, one per file in $1 (node, site, broker, ca.pem,
# authorized_keys); a mistake is one line on the console.
read_provisioning() {
    python3 - "$conf" "$1" <<'PY'
import pathlib, sys, tomllib
conf, out = sys.argv[1], pathlib.Path(sys.argv[2])
try:
    with open(conf, "rb") as f:
        values = tomllib.load(f)
except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
    sys.exit(f"{conf}: not valid TOML: {exc}")
for key in ("node", "site", "broker", "ca"):
    if not isinstance(values.get(key), str) or not values[key].strip():
        sys.exit(f"{conf}: {key} must be a non-empty string")
keys = values.get("ssh_authorized_keys", [])
if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
    sys.exit(f"{conf}: ssh_authorized_keys must be a list of strings (lines of authorized_keys)")
if "-----BEGIN CERTIFICATE-----" not in values["ca"]:
    sys.exit(f"{conf}: ca must be the site CA certificate in PEM (-----BEGIN CERTIFICATE----- ...)")
for key in ("node", "site", "broker"):
    (out / key).write_text(values[key].strip())
(out / "ca.pem").write_text(values["ca"].strip() + "\n")
(out / "authorized_keys").write_text("".join(k.strip() + "\n" for k in keys))
PY
}

provision() {
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if ! read_provisioning "$work"; then
        say "error: $conf not used (fix it and reboot)"
        return 0
    fi
    node=$(cat "$work/node")
    template=/usr/share/earwitness/node.toml
    [ -f "$boot/node.toml" ] && template=$boot/node.toml
    if ! earwitness-provision --node "$node" --site "$(cat "$work/site")" --broker "$(cat "$work/broker")" \
            --ca "$work/ca.pem" --template "$template" > "$work/provision.out"; then
        say "error: provisioning from $conf failed (see above; fix it and reboot)"
        return 0
    fi
    if [ -s "$work/authorized_keys" ]; then
        install -d -m 700 /root/.ssh
        install -m 600 "$work/authorized_keys" /root/.ssh/authorized_keys
    fi
    cp "$etc/$node.csr" "$boot/$node.csr"
    mv "$conf" "$conf.done"
    say "node $node provisioned"
    # the lines the installer copies: the public key for the server's registry, the request for the CA
    sed -n 's/^public key: /earwitness-firstboot: public key: /p' "$work/provision.out"
    cat "$etc/$node.csr"
    say "sign $node.csr (also on the boot partition) with the site CA; put the certificate on the boot" \
        "partition as node.pem (or copy it to $etc/node.pem)"
}
[ -f "$conf" ] && provision

install_certificate() {
    # the certificate must be for this node's own TLS key
    if [ "$(openssl x509 -in "$boot/node.pem" -noout -pubkey 2>/dev/null)" != \
         "$(openssl pkey -in "$etc/node-key.pem" -pubout 2>/dev/null)" ]; then
        say "error: $boot/node.pem is not a certificate for this node's key ($etc/node-key.pem); not installed"
        return 0
    fi
    install -m 644 "$boot/node.pem" "$etc/node.pem.new"
    mv "$etc/node.pem.new" "$etc/node.pem"
    say "certificate installed; the node starts"
}
if [ -f "$boot/node.pem" ] && [ -f "$etc/node-key.pem" ] && ! cmp -s "$boot/node.pem" "$etc/node.pem"; then
    install_certificate
fi
if [ -f "$etc/node.toml" ] && [ ! -f "$etc/node.pem" ]; then
    say "waiting for the node's certificate (node.pem on the boot partition or in $etc)"
elif [ ! -f "$etc/node.toml" ]; then
    say "not provisioned: put earwitness.toml on the boot partition and reboot"
fi
sync  # the installer may pull the power once the console shows the request
exit 0
