"""earwitness fusion: configuration and registry errors are one line and exit 2."""
from __future__ import annotations

import pathlib
import socket

import pytest

from earwitness.cli import UserError, main
from fusion.cli_fusion import load_config
from fusion.server.registry import RegistryError, load_registry, write_registry
from simulator.broker import free_port
from unreadable_file import unreadable

KEY = "ab" * 32
KEY_2 = "cd" * 32   # a key belongs to one node only


@pytest.fixture
def registry(tmp_path):
    return write_registry(tmp_path / "nodes.toml", {"n1": (KEY, {"x": 0.0, "y": 0.0, "z": 1.0}),
                                                    "n2": (KEY_2, {"x": 300.0, "y": 400.0, "z": 1.0})})


@pytest.mark.parametrize("text, message", [
    ('site = "s"\nregistry = "nodes.toml"\n', "missing setting 'broker'"),
    ('site = "s"\nbroker = "http://x"\nregistry = "nodes.toml"\n', "broker URL must be"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\ncolour = 1\n', "unknown setting(s) colour"),
    ('site = "a/b"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\n', "site must be"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\nmode = "4d"\n', "mode must be one of"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\ntemperature_c = "warm"\n', "temperature_c must be"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "absent.toml"\n', "absent.toml"),
    ('site = "s"\nbroker = "mqqt://127.0.0.1:PORT"\nregistry = "nodes.toml"\n', "broker URL must be"),
    ('site = "s"\nbroker = "mqtt://[::1:PORT"\nregistry = "nodes.toml"\n', "broker URL is not a URL"),
    ('site = "s"\nbroker = "nats://[::1:PORT"\nregistry = "nodes.toml"\n', "NATS server URL is not a URL"),
    ('site = [\n', "not valid TOML"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\nmax_range_m = 0\n', "max_range_m must be"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\nconnect_timeout_s = 0\n',
     "connect_timeout_s must be a positive number of seconds"),
    ('site = "s"\nbroker = "mqtt://127.0.0.1"\nregistry = "nodes.toml"\ntimezone = "Mars/Olympus"\n',
     "timezone 'Mars/Olympus' is not a known IANA time zone name"),
    ('site = "s"\nbroker = "nats://127.0.0.1:PORT"\nregistry = "nodes.toml"\n[tls]\nca = "ca.pem"\n',
     "[tls] applies to an mqtts:// broker"),
])
def test_bad_config_is_one_line(tmp_path, registry, capsys, text, message):
    config = tmp_path / "fusion.toml"
    config.write_text(text.replace("PORT", str(free_port())))
    assert main(["fusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("earwitness fusion: error: ") and message in err[0], err


# RFC 6761: no name under .invalid exists; a name server says so at once.
NO_SUCH_HOST = "no-such-broker.invalid"


@pytest.mark.parametrize("broker", [f"mqtt://{NO_SUCH_HOST}:1883", f"mqtts://fusion:pw@{NO_SUCH_HOST}",
                                    f"nats://127.0.0.1:4222,nats://{NO_SUCH_HOST}:4222"])
def test_a_broker_host_that_does_not_exist_fails_at_once(tmp_path, registry, capsys, broker):
    """A typo in the host name: no waiting mends it (a broker that is down is waited for:
    tests/test_fusion_broker_wait.py)."""
    try:
        socket.getaddrinfo(NO_SUCH_HOST, 1883)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"no name server answers here ({exc.strerror}): a missing name looks like an outage")
    config = tmp_path / "fusion.toml"
    config.write_text(f'site = "s"\nbroker = "{broker}"\nregistry = "nodes.toml"\n')
    assert main(["fusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"host '{NO_SUCH_HOST}' not found" in err[0] and str(config) in err[0], err


@pytest.mark.parametrize("nodes, message", [
    ('[[node]]\nid = "a"\npublic_key = "zz"\nx = 1.0\ny = 2.0\n', "public_key must be 64 hex"),
    ('[[node]]\nid = "a"\npublic_key = "' + KEY + '"\nx = 1.0\n', "y must be a finite number"),
    ('[[node]]\nid = "a/b"\npublic_key = "' + KEY + '"\nx = 1.0\ny = 1.0\n', "id must be"),
    ('[[node]]\nid = "a"\npublic_key = "' + KEY + '"\nx = 1.0\ny = 1.0\n[[node]]\nid = "a"\npublic_key = "' + KEY
     + '"\nx = 1.0\ny = 1.0\n', "listed twice"),
    ('[[node]]\nid = "a"\npublic_key = "' + KEY + '"\nx = 1.0\ny = 1.0\n[[node]]\nid = "b"\npublic_key = "' + KEY
     + '"\nlat = 1.0\nlon = 1.0\n', "mixes local"),
    ("", "no [[node]] entries"),
    ('[[node]]\nid = "a"\npublic_key = "' + KEY + '"\nx = 1.0\ny = 1.0\nsurvey = 3\n', "survey must be a string"),
])
def test_bad_registry(tmp_path, nodes, message):
    path = tmp_path / "nodes.toml"
    path.write_text(nodes)
    with pytest.raises(RegistryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_registry(path)


def test_registry_round_trip(registry):
    reg = load_registry(registry)
    assert reg.positions == {"n1": {"x": 0.0, "y": 0.0, "z": 1.0}, "n2": {"x": 300.0, "y": 400.0, "z": 1.0}}
    assert reg.diameter_m() == pytest.approx(500.0)
    assert len(reg.keyring) == 2


TLS_FILES = {"ca": "ca.pem", "cert": "fusion.pem", "key": "fusion-tls.key"}
CONSOLE_TLS = {"tls_cert": "console.pem", "tls_key": "console.key"}


def _tls_config(tmp_path, locked_setting: str | None, locked) -> pathlib.Path:
    """fusion.toml with a [tls] section and HTTPS for the console, ``locked_setting``'s file ``locked``."""
    for name in [*TLS_FILES.values(), *CONSOLE_TLS.values()]:
        (tmp_path / name).write_text("-----BEGIN CERTIFICATE-----\n")
    files = {f"tls.{k}": v for k, v in TLS_FILES.items()} | {f"console.{k}": v for k, v in CONSOLE_TLS.items()}
    if locked_setting is not None:
        files[locked_setting] = str(locked)
    tls = "".join(f'{k.split(".")[1]} = "{v}"\n' for k, v in files.items() if k.startswith("tls."))
    console = "".join(f'{k.split(".")[1]} = "{v}"\n' for k, v in files.items() if k.startswith("console."))
    config = tmp_path / "fusion.toml"
    config.write_text(f'site = "s"\nbroker = "mqtts://127.0.0.1:{free_port()}"\nregistry = "nodes.toml"\n'
                      f'[tls]\n{tls}[console]\nlisten = "127.0.0.1:{free_port()}"\n{console}')
    return config


@pytest.mark.parametrize("setting, named", [("tls.ca", "tls.ca"), ("tls.cert", "tls.cert"), ("tls.key", "tls.key"),
                                            ("console.tls_cert", "[console] tls_cert"),
                                            ("console.tls_key", "[console] tls_key")])
def test_an_unreadable_tls_file_is_named_when_the_config_loads(tmp_path, registry, capsys, setting, named):
    """ssl says only "Permission denied" (and for [tls] only once connecting, after the store was
    opened): the configuration's check names the setting and the file, before anything starts."""
    locked = unreadable(tmp_path)
    config = _tls_config(tmp_path, setting, locked)
    assert main(["fusion", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{config}: {named}: cannot read {locked} (Permission denied)" in err[0], err
    assert not (tmp_path / "fusion.db").exists()   # nothing started


def test_missing_and_readable_tls_files_at_load(tmp_path, registry):
    config = _tls_config(tmp_path, "tls.key", tmp_path / "gone.key")
    with pytest.raises(UserError, match=f"tls.key: no such file {tmp_path / 'gone.key'}"):
        load_config(config)
    config = _tls_config(tmp_path, None, None)   # readable: [tls]'s are loaded by ssl once connecting
    config.write_text(config.read_text().split("[console]")[0])   # (the console's load as a pair at once)
    assert load_config(config).tls == {k: str(tmp_path / v) for k, v in TLS_FILES.items()}
