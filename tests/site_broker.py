"""The production broker of hardware/broker/ run by a test: its mosquitto.conf with the port
and folders substituted, so what is tested is what is deployed."""
from __future__ import annotations

import pathlib

from simulator.broker import LOOPBACK

BROKER_DIR = pathlib.Path(__file__).resolve().parents[1] / "hardware" / "broker"


def broker_config(conf: str, port: int, pki_dir: pathlib.Path, workdir: pathlib.Path) -> str:
    """The production mosquitto.conf, run on 127.0.0.1:port with test folders."""
    substitutions = {
        "listener 8883": f"listener {port} {LOOPBACK}",
        "/etc/mosquitto/earwitness/acl": str(BROKER_DIR / "acl"),
        "/etc/mosquitto/earwitness/": f"{pki_dir}/",
        "/var/lib/mosquitto/": f"{workdir}/",
        "/var/log/mosquitto/mosquitto.log": str(workdir / "mosquitto.log"),
    }
    for old, new in substitutions.items():
        assert old in conf, f"hardware/broker/mosquitto.conf no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    return conf
