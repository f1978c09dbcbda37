#!/bin/sh
# Provision an Earwitness sensor node: its signing key, its TLS key and certificate request,
# and its node.toml.  Run on the node (as root for /etc/earwitness) after installing the
# package; see hardware/README.md.
#
#   provision.sh --node roof-17 --site pgh --broker mqtts://broker.example.org:8883 [--ca ca.pem]
#                [--dest /etc/earwitness] [--data-dir /var/lib/earwitness]
#                [--template node.toml] [--earwitness /opt/earwitness/.venv/bin/earwitness]
#
# Makes in DEST:  node.key, node.key.pub  (Ed25519 pulse-signing pair: `earwitness node --keygen`)
#                 node-key.pem, NODE.csr  (TLS client key and certificate request, CN = node name)
#                 node.toml               (from the template with this node's name, site, broker, paths)
#                 ca.pem                  (copied from --ca, the site CA)
# Prints the public key and the CSR's path: register the key and the node's surveyed position
# at the fusion server, have the site CA sign the CSR (hardware/broker/README.md) into
# DEST/node.pem, then `systemctl enable --now earwitness-node`.
# Existing keys are kept (a node keeps its identity); node.toml is rewritten.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
node= site= broker= ca=
dest=/etc/earwitness
data_dir=/var/lib/earwitness
template=$here/node/node.toml
[ -f "$template" ] || template=/usr/share/earwitness/node.toml
earwitness=$(command -v earwitness || echo /opt/earwitness/.venv/bin/earwitness)

die() { echo "provision.sh: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case $1 in
        --node) node=$2 ;;
        --site) site=$2 ;;
        --broker) broker=$2 ;;
        --ca) ca=$2 ;;
        --dest) dest=$2 ;;
        --data-dir) data_dir=$2 ;;
        --template) template=$2 ;;
        --earwitness) earwitness=$2 ;;
        *) die "unknown option $1 (see the head of this script)" ;;
    esac
    shift 2
done

[ -n "$node" ] && [ -n "$site" ] && [ -n "$broker" ] || die "--node, --site and --broker are required"
# Names become MQTT topic levels and the certificate's CN: keep them to a safe alphabet.
for value in "$node" "$site"; do
    case $value in
        *[!A-Za-z0-9._-]*) die "node and site names may use only letters, digits, '.', '_', '-': '$value'" ;;
    esac
done
case $node in fusion|dispatch) die "'$node' is reserved for the server's certificates (hardware/broker/acl)" ;; esac
case $broker in mqtts://?*) ;; *) die "--broker must be an mqtts:// url (the broker takes TLS only): '$broker'" ;; esac
for value in "$broker" "$dest" "$data_dir"; do
    case $value in *[\|\&\"\\]*) die "'$value' may not contain | & \" or \\ (it goes into node.toml)" ;; esac
done
[ -f "$template" ] || die "no template $template"
[ -x "$earwitness" ] || die "no earwitness program at $earwitness (install the package or give --earwitness)"
[ -z "$ca" ] || [ -f "$ca" ] || die "no CA file $ca"

# The node runs as its own user: it must reach into DEST and read the CA, its certificate and
# node.toml; only the two private keys are its alone (0600, chowned below).
[ -d "$dest" ] || install -d -m 755 "$dest"
chmod go+x "$dest"
umask 077

if [ -f "$dest/node.key" ]; then
    echo "keeping the existing signing key $dest/node.key" >&2
else
    "$earwitness" node --keygen "$dest/node.key" >/dev/null
fi

if [ -f "$dest/node-key.pem" ]; then
    echo "keeping the existing TLS key $dest/node-key.pem" >&2
else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dest/node-key.pem" 2>/dev/null
fi
openssl req -new -key "$dest/node-key.pem" -subj "/CN=$node" -out "$dest/$node.csr"

[ -z "$ca" ] || install -m 644 "$ca" "$dest/ca.pem"
chmod 644 "$dest/$node.csr"

# Values only: every comment and key of the template stays.
sed -e "s|^name = \"[^\"]*\"|name = \"$node\"|" \
    -e "s|^site = \"[^\"]*\"|site = \"$site\"|" \
    -e "s|^key = \"[^\"]*\"|key = \"$dest/node.key\"|" \
    -e "s|^data_dir = \"[^\"]*\"|data_dir = \"$data_dir\"|" \
    -e "s|^url = \"[^\"]*\"|url = \"$broker\"|" \
    -e "s|^ca = \"[^\"]*\"|ca = \"$dest/ca.pem\"|" \
    -e "s|^cert = \"[^\"]*\"|cert = \"$dest/node.pem\"|" \
    -e "s|^cert_key = \"[^\"]*\"|cert_key = \"$dest/node-key.pem\"|" \
    "$template" > "$dest/node.toml.new"
chmod 644 "$dest/node.toml.new"
mv "$dest/node.toml.new" "$dest/node.toml"

if [ "$(id -u)" = 0 ] && id earwitness >/dev/null 2>&1; then
    chown earwitness:earwitness "$dest/node.key" "$dest/node-key.pem"
    mkdir -p "$data_dir" && chown earwitness:earwitness "$data_dir"
fi

chmod 644 "$dest/node.key.pub"
echo "public key: $(cat "$dest/node.key.pub")"
echo "certificate request: $dest/$node.csr (sign it with the site CA into $dest/node.pem)"
