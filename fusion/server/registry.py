"""The registry of a site's nodes: id, Ed25519 public key and position, read from a TOML file.

::

    [[node]]
    id = "roof-12"
    public_key = "3b6a27bc..."          # 64 hex characters, the node's <key>.pub
    x = 120.5                           # local metres (x east, y north, z up) ...
    y = -40.0
    z = 12.0
    # ... or lat = 40.44, lon = -79.99, alt = 260.0 (WGS84); one frame for the whole site
    survey = "RTK GNSS, city survey 2026-03-14"   # optional: where the position came from (the report shows it)
    # A replaced node (new hardware, new key): its former key verifies only what it signed
    # before the replacement (stored pulses, evidence), never anything newer.
    retired_keys = [{ public_key = "9f00...", until = 2026-12-01T09:00:00Z }]

No two nodes may share a public key (one could sign as the other).

Example::

    reg = load_registry("nodes.toml")
    msg = earwitness.wire.decode(payload, reg.keyring, topic_node="roof-12")
    reg.name(msg.node_id), reg.positions["roof-12"]
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib

from earwitness.wire import Keyring
from fusion.locator.sensors import Sensors
from fusion.tracking.reach import diameter_m

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

LOCAL_KEYS = ("x", "y", "z")
WGS84_KEYS = ("lat", "lon", "alt")
NODE_KEYS = {"id", "public_key", "retired_keys", "survey", *LOCAL_KEYS, *WGS84_KEYS}
_UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_NS_PER_US = 1000


class RegistryError(ValueError):
    """The registry file is malformed; the message says where, in one line."""


@dataclasses.dataclass
class Registry:
    """Known nodes: ``keyring`` (for :func:`earwitness.wire.decode`), ``positions`` and ``sensors``."""

    keyring: Keyring
    positions: dict[str, dict]
    sensors: Sensors

    def name(self, nid: int) -> str | None:
        """Node name of a wire node id, or None if unknown."""
        return self.keyring.name(nid)

    def diameter_m(self) -> float:
        """Largest horizontal distance between two nodes (sets the propagation window)."""
        return diameter_m(self.sensors)


def registry_from_nodes(nodes: list[dict], where: str = "registry") -> Registry:
    """Build a registry from node tables (as in the TOML file's ``[[node]]`` entries)."""
    if not nodes:
        raise RegistryError(f"{where}: no [[node]] entries")
    keyring, positions, frame = Keyring(), {}, None
    for i, node in enumerate(nodes, 1):
        here = f"{where} node {i}"
        if not isinstance(node, dict):
            raise RegistryError(f"{here}: not a table")
        unknown = set(node) - NODE_KEYS
        if unknown:
            raise RegistryError(f"{here}: unknown key(s) {', '.join(sorted(unknown))}")
        name = node.get("id")
        if not isinstance(name, str) or not name or "/" in name or "+" in name or "#" in name:
            raise RegistryError(f"{here}: id must be a non-empty string without / + #")
        if name in positions:
            raise RegistryError(f"{here}: node {name!r} listed twice")
        this_frame = LOCAL_KEYS if "x" in node else WGS84_KEYS
        if frame is not None and this_frame is not frame:
            raise RegistryError(f"{here}: mixes local x/y/z and WGS84 lat/lon/alt positions")
        frame = this_frame
        if not isinstance(node.get("survey", ""), str):
            raise RegistryError(f"{here} ({name}): survey must be a string (where the position came from)")
        pos = {}
        for key in this_frame:
            value = node.get(key, 0.0 if key in ("z", "alt") else None)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise RegistryError(f"{here} ({name}): {key} must be a finite number")
            pos[key] = float(value)
        try:
            keyring.add(name, node.get("public_key", ""))
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{here} ({name}): public_key must be 64 hex characters of a key no other node has "
                                f"({exc})") from None
        _retire_keys(keyring, name, node.get("retired_keys", []), here)
        positions[name] = pos
    tuples = {n: tuple(p[k] for k in frame) for n, p in positions.items()}
    sensors = Sensors.from_local(tuples) if frame is LOCAL_KEYS else Sensors.from_wgs84(tuples)
    return Registry(keyring=keyring, positions=positions, sensors=sensors)


def _retire_keys(keyring: Keyring, name: str, retired, here: str) -> None:
    """The node's ``retired_keys``: each ``{public_key = "hex", until = <TOML date-time with offset>}``."""
    if not isinstance(retired, list):
        raise RegistryError(f"{here} ({name}): retired_keys must be an array of tables")
    for k, entry in enumerate(retired, 1):
        where = f"{here} ({name}) retired key {k}"
        until = entry.get("until") if isinstance(entry, dict) else None
        if not isinstance(until, datetime.datetime) or until.tzinfo is None or set(entry) != {"public_key", "until"}:
            raise RegistryError(f"{where}: needs public_key and until (a date-time with offset, e.g. 2026-12-01T09:00:00Z)")
        try:
            keyring.retire(name, entry["public_key"], (until - _UNIX_EPOCH) // datetime.timedelta(microseconds=1) * _NS_PER_US)
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{where}: public_key must be 64 hex characters of a key no other node has ({exc})") from None


def load_registry(path: str | pathlib.Path) -> Registry:
    """Read a registry TOML file; RegistryError (one line) if it is malformed."""
    path = pathlib.Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    nodes = data.get("node", [])
    if not isinstance(nodes, list):
        raise RegistryError(f"{path}: 'node' must be an array of tables ([[node]])")
    return registry_from_nodes(nodes, str(path))


def write_registry(path: str | pathlib.Path, nodes: dict[str, tuple[str, dict]]) -> pathlib.Path:
    """Write a registry file from ``{id: (public_key_hex, position)}`` (provisioning and tests)."""
    lines = []
    for name, (key_hex, pos) in nodes.items():
        lines += ["[[node]]", f"id = {_toml_str(name)}", f"public_key = {_toml_str(key_hex)}"]
        lines += [f"{k} = {float(v)!r}" for k, v in pos.items()]
        lines.append("")
    path = pathlib.Path(path)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
