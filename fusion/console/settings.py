"""The ``[console]`` table of fusion.toml, checked::

    [console]
    listen = "127.0.0.1:8443"
    tls_cert = "console.pem"        # with tls_key: HTTPS only, cookies marked Secure
    tls_key = "console.key"
    idle_s = 1800                   # a session unused this long ends (default 30 min)
    areas = "areas.geojson"         # neighbourhood polygons: transparency dashboard, unreported page
    layers = ["streets.geojson"]    # the city's map layers and basemap, read by fusion.console.citymap
    basemap = "city.pmtiles"

Paths are relative to the configuration file's folder.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import ssl

from earwitness.files import file_problem
from fusion.console.server import parse_listen
from fusion.console.sessions import DEFAULT_IDLE_S

KEYS = ("listen", "tls_cert", "tls_key", "idle_s", "areas", "layers", "basemap")
PATH_KEYS = ("tls_cert", "tls_key", "areas")


class SettingsError(ValueError):
    """A [console] setting that cannot be used: one line."""


@dataclasses.dataclass(frozen=True)
class ConsoleSettings:
    listen: str
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    idle_s: float = DEFAULT_IDLE_S
    areas: pathlib.Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def parse_settings(folder: pathlib.Path, table: dict) -> ConsoleSettings:
    """The [console] table's settings (paths relative to ``folder``); SettingsError on any problem."""
    unknown = set(table) - set(KEYS)
    if unknown:
        raise SettingsError(f"[console] unknown setting(s) {', '.join(sorted(unknown))}; it takes {', '.join(KEYS)}")
    if not isinstance(table.get("listen"), str):
        raise SettingsError('[console] needs listen = "HOST:PORT"')
    try:
        parse_listen(table["listen"])
    except ValueError as exc:
        raise SettingsError(f"[console] {exc}") from None
    for key in PATH_KEYS:
        if key in table and not isinstance(table[key], str):
            raise SettingsError(f"[console] {key} must be a file path (a string)")
    if ("tls_cert" in table) != ("tls_key" in table):
        raise SettingsError("[console] tls_cert and tls_key go together: give both or neither")
    idle_s = table.get("idle_s", DEFAULT_IDLE_S)
    if isinstance(idle_s, bool) or not isinstance(idle_s, (int, float)) or not 0 < idle_s < math.inf:
        raise SettingsError("[console] idle_s must be a positive number of seconds")
    paths = {k: folder / table[k] for k in PATH_KEYS if k in table}
    return ConsoleSettings(listen=table["listen"], idle_s=float(idle_s), **paths)


def check_tls(cert: pathlib.Path, key: pathlib.Path) -> None:
    """SettingsError in one line unless the certificate and key files load as a pair."""
    for what, path in (("tls_cert", cert), ("tls_key", key)):
        problem = file_problem(path)   # unreadable: load_cert_chain's error would not say which file
        if problem:
            raise SettingsError(f"[console] {what}: {problem}")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        # OpenSSL's reason, when it has a useful one (a key that does not match, ...): "PEM lib" says nothing.
        reason = f" ({exc.reason.lower().replace('_', ' ')})" if exc.reason and exc.reason != "PEM lib" else ""
        raise SettingsError(f"[console] tls_cert {cert} / tls_key {key}: not a PEM certificate and its key{reason}") from None
    except OSError as exc:
        raise SettingsError(f"[console] tls_cert {cert} / tls_key {key}: {exc.strerror or exc}") from None
