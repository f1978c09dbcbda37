"""hardware/provision.sh: a node's keys, certificate request and node.toml, for real."""
from __future__ import annotations

import subprocess

from edge import config, keys
from provisioning import provision
from tls_certs import make_pki, sign

NODE, SITE, BROKER = "roof-9", "pgh", "mqtts://broker.example.org:8883"


def test_a_provisioned_node_has_a_config_the_node_accepts_and_its_keys(tmp_path):
    pki = make_pki(tmp_path / "ca", clients=())
    dest = tmp_path / "etc"
    run = provision(dest, "--node", NODE, "--site", SITE, "--broker", BROKER, "--ca", str(pki["ca"]))
    public = (dest / "node.key.pub").read_text().strip()
    assert f"public key: {public}" in run.stdout
    # the site CA signs the request (hardware/broker/README.md); then the node's config loads
    sign(tmp_path / "ca", dest / f"{NODE}.csr", dest / "node.pem")
    cfg = config.load(dest / "node.toml")
    assert (cfg.node.name, cfg.node.site, cfg.mqtt.url) == (NODE, SITE, BROKER)
    assert (cfg.mqtt.ca, cfg.mqtt.cert, cfg.mqtt.cert_key) == (dest / "ca.pem", dest / "node.pem", dest / "node-key.pem")
    assert cfg.node.data_dir == dest / "var"
    assert keys.public_hex(keys.load_signing_key(cfg.node.key).verify_key) == public
    assert (cfg.node.key.stat().st_mode & 0o777) == 0o600 and (cfg.mqtt.cert_key.stat().st_mode & 0o777) == 0o600
    # the node's own user (not root) enters the folder and reads the CA and its config (the image's
    # first boot once left ca.pem 0600 root's: "Permission denied" at the node's start)
    assert dest.stat().st_mode & 0o755 == 0o755
    assert all((dest / name).stat().st_mode & 0o777 == 0o644 for name in ("ca.pem", "node.toml", "node.key.pub", f"{NODE}.csr"))
    subject = _openssl("x509", "-in", dest / "node.pem", "-noout", "-subject")
    assert subject.strip().replace(" ", "").endswith(f"CN={NODE}")
    # the certificate belongs to the TLS key provision.sh made
    public_key = _openssl("pkey", "-in", dest / "node-key.pem", "-pubout")
    assert public_key == _openssl("x509", "-in", dest / "node.pem", "-noout", "-pubkey")


def _openssl(*args) -> str:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=True).stdout


def test_provisioning_again_keeps_the_node_identity(tmp_path):
    dest = tmp_path / "etc"
    provision(dest, "--node", NODE, "--site", SITE, "--broker", BROKER)
    first = [(dest / f).read_bytes() for f in ("node.key", "node-key.pem")]
    run = provision(dest, "--node", NODE, "--site", "pgh-2", "--broker", BROKER)
    assert "keeping the existing signing key" in run.stderr
    assert [(dest / f).read_bytes() for f in ("node.key", "node-key.pem")] == first
    assert 'site = "pgh-2"' in (dest / "node.toml").read_text()


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = [("--node", "roof/1", "--site", SITE, "--broker", BROKER),
             ("--node", "fusion", "--site", SITE, "--broker", BROKER),
             ("--node", NODE, "--site", SITE, "--broker", "mqtt://plain:1883"),
             ("--node", NODE, "--site", SITE),
             ("--node", NODE, "--site", SITE, "--broker", BROKER, "--ca", str(tmp_path / "missing.pem"))]
    for args in cases:
        run = provision(tmp_path / "etc", *args, check=False)
        one_line = run.stderr.count("\n") == 1 and run.stderr.startswith("provision.sh: error:")
        assert run.returncode == 2 and one_line, (args, run.stderr)
        assert not (tmp_path / "etc").exists()
