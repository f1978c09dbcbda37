"""The node's one configuration file (TOML), read with tomllib and validated at start.

Every mistake is reported as one line naming the file, the key and what is wrong
(:class:`ConfigError`).  Relative paths are taken relative to the file.  Example::

    [node]
    name = "roof-17"
    site = "pgh"
    key = "node.key"            # made by `earwitness node --keygen node.key`
    data_dir = "var"            # outbox.db and evidence/ live here

    [audio]
    source = "device"           # "device", "wav" or "stdin"
    rate_hz = 48000
    channels = 2
    mic_channel = 0
    pps_channel = 1             # omit when PPS is not wired into the audio

    [mqtt]
    url = "mqtts://broker.example:8883"   # several, comma separated: failover among them
    # protocol = "5"            # "3.1.1" for a NATS cluster's MQTT gateway
    ca = "ca.pem"
    cert = "node.pem"
    cert_key = "node-key.pem"
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import typing

from earwitness.brokerurls import MQTT_SCHEMES, split_broker_url
from earwitness.files import file_problem
from edge.utctime import parse_utc_ns

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SOURCES = ("device", "wav", "stdin")
PCM_FORMATS = ("int16", "int32", "float32")
PPS_MODES = ("audio", "kernel", "none")
MQTT_PROTOCOLS = ("5", "3.1.1")


class ConfigError(ValueError):
    """A configuration the node cannot run with; the message is one line."""


@dataclasses.dataclass
class NodeSection:
    name: str
    site: str
    key: pathlib.Path
    data_dir: pathlib.Path


@dataclasses.dataclass
class AudioSection:
    source: str = "device"
    device: typing.Optional[typing.Union[str, int]] = None  # sounddevice name or index
    path: typing.Optional[pathlib.Path] = None  # source = "wav"
    realtime: bool = True  # wav: replay at the recorded pace, else as fast as possible
    start_utc: typing.Optional[str] = None  # wav: ISO 8601 UTC of the first sample
    rate_hz: int = 48000
    channels: int = 2
    mic_channel: int = 0
    pps_channel: typing.Optional[int] = None
    format: str = "int16"  # stdin raw PCM sample format
    block: int = 4800  # frames per block: 0.1 s at 48 kHz; larger blocks cost less CPU per second
    ring_s: float = 10.0  # capture ring buffer


@dataclasses.dataclass
class TimingSection:
    pps: str = "none"  # "audio": PPS in audio.pps_channel; "kernel": pps_device; "none": system clock
    pps_device: typing.Optional[str] = None
    gps_port: typing.Optional[str] = None
    gps_baud: int = 9600


@dataclasses.dataclass
class MqttSection:
    url: str = "mqtt://127.0.0.1:1883"   # or several, comma separated: the node fails over among them
    protocol: str = "5"                 # MQTT version: "5", or "3.1.1" (a NATS cluster's MQTT gateway)
    username: typing.Optional[str] = None
    password: typing.Optional[str] = None
    ca: typing.Optional[pathlib.Path] = None
    cert: typing.Optional[pathlib.Path] = None
    cert_key: typing.Optional[pathlib.Path] = None
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    health_interval_s: float = 60.0
    inflight: int = 64  # pulses handed to the client library at once

    @property
    def urls(self) -> list[str]:
        """The brokers to try, in order (``url`` split at commas)."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def tls(self) -> bool:
        return split_broker_url(self.urls[0], MQTT_SCHEMES, "mqtt.url")[2] == "mqtts"

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) of each broker."""
        return [split_broker_url(url, MQTT_SCHEMES, "mqtt.url")[:2] for url in self.urls]

    @property
    def host(self) -> str:
        return self.brokers[0][0]

    @property
    def port(self) -> int:
        return self.brokers[0][1]


@dataclasses.dataclass
class OutboxSection:
    budget_mb: float = 64.0
    drain_timeout_s: float = 30.0  # at the end of a wav/stdin source: wait this long for acks


@dataclasses.dataclass
class EvidenceSection:
    enabled: bool = True
    rate_hz: int = 12000
    hours: float = 30.0
    budget_mb: float = 2048.0
    chunk_s: float = 60.0


@dataclasses.dataclass
class Config:
    path: pathlib.Path
    node: NodeSection
    audio: AudioSection
    timing: TimingSection
    mqtt: MqttSection
    outbox: OutboxSection
    evidence: EvidenceSection
    detector: dict[str, float]


_SECTIONS = {"node": NodeSection, "audio": AudioSection, "timing": TimingSection, "mqtt": MqttSection,
             "outbox": OutboxSection, "evidence": EvidenceSection}


def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is pathlib.Path or hint is str:
        return isinstance(value, str)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", pathlib.Path: "a path"}
    return " or ".join(names.get(a, getattr(a, "__name__", str(a))) for a in args)


def _section(cls, table, name: str, base: pathlib.Path, where: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: [{name}] unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    values = {}
    for key, field in fields.items():
        if key not in table:
            if field.default is dataclasses.MISSING:
                raise ConfigError(f"{where}: [{name}] missing key {key!r}")
            continue
        value, hint = table[key], hints[key]
        if not _type_ok(value, hint):
            raise ConfigError(f"{where}: {name}.{key} must be {_type_name(hint)}, not {value!r}")
        if pathlib.Path in (hint, *typing.get_args(hint)) and value is not None:
            value = base / pathlib.Path(value).expanduser()
        if isinstance(value, int) and float in (hint, *typing.get_args(hint)) and not isinstance(value, bool):
            value = float(value)
        values[key] = value
    return cls(**values)


def _check(cfg: Config, where: str) -> None:
    def fail(msg: str) -> typing.NoReturn:
        raise ConfigError(f"{where}: {msg}")

    for field, value in (("node.name", cfg.node.name), ("node.site", cfg.node.site)):
        if not value or any(c in value for c in "/+#\0 "):
            fail(f"{field} must be non-empty without '/', '+', '#' or spaces (it is part of MQTT topics): {value!r}")
    _check_audio(cfg.audio, fail)
    _check_timing(cfg.timing, cfg.audio, fail)
    _check_mqtt(cfg.mqtt, fail)
    if cfg.outbox.budget_mb <= 0:
        fail("outbox.budget_mb must be positive")
    e, a = cfg.evidence, cfg.audio
    if e.enabled and (e.rate_hz < 1000 or e.rate_hz > a.rate_hz or e.hours <= 0 or e.budget_mb <= 0 or e.chunk_s <= 0):
        fail(f"evidence: rate_hz must be 1000 to audio.rate_hz ({a.rate_hz}); hours, budget_mb, chunk_s positive")
    for key, setting in cfg.detector.items():
        if isinstance(setting, bool) or not isinstance(setting, (int, float)):
            fail(f"detector.{key} must be a number, not {setting!r}")


def _check_audio(a: AudioSection, fail: typing.Callable[[str], typing.NoReturn]) -> None:
    if a.source not in SOURCES:
        fail(f"audio.source must be one of {', '.join(SOURCES)}, not {a.source!r}")
    if a.source == "wav" and a.path is None:
        fail("audio.source = 'wav' needs audio.path")
    if a.format not in PCM_FORMATS:
        fail(f"audio.format must be one of {', '.join(PCM_FORMATS)}, not {a.format!r}")
    if not 8000 <= a.rate_hz <= 192000:
        fail(f"audio.rate_hz must be 8000 to 192000, not {a.rate_hz}")
    if a.channels < 1:
        fail("audio.channels must be at least 1")
    for key in ("mic_channel", "pps_channel"):
        ch = getattr(a, key)
        if ch is not None and not 0 <= ch < a.channels:
            fail(f"audio.{key} = {ch} is not one of the {a.channels} channels (0-based)")
    if a.pps_channel is not None and a.pps_channel == a.mic_channel:
        fail("audio.pps_channel and audio.mic_channel must differ")
    if a.block < 1 or a.ring_s <= 0:
        fail("audio.block and audio.ring_s must be positive")
    if a.start_utc is not None:
        try:
            parse_utc_ns(a.start_utc)
        except ValueError as exc:
            fail(f"audio.start_utc: {exc}")


def _check_timing(t: TimingSection, a: AudioSection, fail: typing.Callable[[str], typing.NoReturn]) -> None:
    if t.pps not in PPS_MODES:
        fail(f"timing.pps must be one of {', '.join(PPS_MODES)}, not {t.pps!r}")
    if t.pps == "audio" and a.pps_channel is None:
        fail("timing.pps = 'audio' needs audio.pps_channel")
    if t.pps == "kernel" and not t.pps_device:
        fail("timing.pps = 'kernel' needs timing.pps_device (e.g. /dev/pps0)")


def _check_mqtt_urls(m: MqttSection, fail: typing.Callable[[str], typing.NoReturn]) -> None:
    if not m.urls:
        fail("mqtt.url is empty")
    schemes = set()
    for url in m.urls:
        try:
            schemes.add(split_broker_url(url, MQTT_SCHEMES, "mqtt.url")[2])
        except ValueError as exc:
            fail(str(exc))
    if len(schemes) > 1:
        fail("mqtt.url: all brokers mqtt:// or all mqtts://")


def _check_mqtt(m: MqttSection, fail: typing.Callable[[str], typing.NoReturn]) -> None:
    _check_mqtt_urls(m, fail)
    if m.protocol not in MQTT_PROTOCOLS:
        fail(f"mqtt.protocol must be one of {', '.join(MQTT_PROTOCOLS)}, not {m.protocol!r}")
    if (m.cert is None) != (m.cert_key is None):
        fail("mqtt.cert and mqtt.cert_key go together (client certificate and its key)")
    if (m.cert or m.ca) and not m.tls:
        fail("mqtt.ca/cert are for TLS: use an mqtts:// url")
    for key in ("ca", "cert", "cert_key"):
        p = getattr(m, key)
        problem = file_problem(p) if p is not None else None
        if problem:
            fail(f"mqtt.{key}: {problem}")
    if m.reconnect_min_s <= 0 or m.reconnect_max_s < m.reconnect_min_s:
        fail("mqtt.reconnect_min_s must be > 0 and <= mqtt.reconnect_max_s")
    if m.health_interval_s <= 0 or m.keepalive_s <= 0 or m.inflight < 1:
        fail("mqtt.health_interval_s, mqtt.keepalive_s and mqtt.inflight must be positive")


def load(path: str | pathlib.Path) -> Config:
    """Read and validate the node configuration at ``path``.

    Raises
    ------
    ConfigError
        One line: file, key, what is wrong.
    OSError
        The file cannot be read.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        try:
            raw = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    return from_dict(raw, path)


def from_dict(raw: dict, path: str | pathlib.Path = "node.toml") -> Config:
    """Validate a configuration given as a dict of sections (the TOML file's structure).

    For programs that run nodes without a file (the simulator's virtual nodes); relative
    paths are taken relative to ``path``'s folder, which need not exist.
    """
    path = pathlib.Path(path)
    where = str(path)
    unknown = sorted(set(raw) - set(_SECTIONS) - {"detector"})
    if unknown:
        raise ConfigError(f"{where}: unknown section [{unknown[0]}] (known: {', '.join([*_SECTIONS, 'detector'])})")
    if "node" not in raw:
        raise ConfigError(f"{where}: missing section [node] (name, site, key, data_dir)")
    base = path.resolve().parent
    sections = {name: _section(cls, raw.get(name, {}), name, base, where) for name, cls in _SECTIONS.items()}
    detector = raw.get("detector", {})
    if not isinstance(detector, dict):
        raise ConfigError(f"{where}: [detector] must be a table")
    cfg = Config(path=path, detector=dict(detector), **sections)
    _check(cfg, where)
    return cfg
