"""``earwitness fusion --config fusion.toml``: run the fusion server until SIGTERM or Ctrl-C.

The configuration (TOML; relative paths are relative to the file)::

    site = "pgh"                          # topics ew/v1/{site}/...
    broker = "mqtt://127.0.0.1:1883"      # mqtts:// for TLS; a NATS JetStream cluster: "nats://a:4222,nats://b:4222,..."
    registry = "nodes.toml"               # the nodes: id, public key, position
    database = "fusion.db"                # SQLite file, or postgresql://user@host/db
    # schema = "pgh"                      # PostgreSQL schema
    # client_id = "fusion-pgh-1"          # stable: the broker keeps this session's messages
    # workers = 2; worker_index = 0       # several workers share the site (fusion.server.partition); on
    #                                     # PostgreSQL each slot is leased and a dead worker's slot taken over
    # shared_group = "fusion"             # their MQTT v5 shared subscription (default "fusion")
    # cell_m = 4000.0; halo_m = 2500.0    # spatial cells each owned by one worker, and their halo
    # temperature_c = 4.0                 # else the locator estimates the speed of sound
    # wind_mps = 3.0; wind_from_deg = 240.0   # a weather reading: the locator models the wind along each
    #                                     # path, err_m states it as told (else: still air, the wind in err_m)
    # frame_m = 2.5                       # err_m's frame term: 0 where places are compared in the sensors'
    #                                     # own frame (simulation); default 2.5 (a phone's GPS, a map)
    # mode = "2d"                         # 2d, 2.5d or 3d
    # margin_s = 1.0                      # added to the propagation window
    # max_range_m = 4000.0                # farthest a shot is heard: bounds groups and location windows
    # webhook = "https://dispatch.example/alerts"
    # cap_sender = "earwitness@city.example"
    # cap_status = "Actual"               # or Exercise, Test, ...
    # request_clips = true                # ask the nodes of a final incident for their audio
    # health_s = 10.0                     # publish the server's health on ew/v1/{site}/fusion/health this often
    # connect_timeout_s = 30.0            # one connect attempt's limit (default: MQTT 10 s, NATS 30 s)
    # cameras = "cameras.csv"             # camera,lat,lon[,heading_deg,fov_deg,range_m,url]: alerts list those that see
    # buildings = "buildings.geojson"     # footprints that block a camera's view (fusion.forensics.cameras)
    # signing_key = "fusion.key"          # the server's Ed25519 key (default fusion.key beside this file)
    # timezone = "America/New_York"       # the site's time zone (IANA): reports show local time beside UTC
    # [tls]
    # ca = "ca.pem"; cert = "fusion.pem"; key = "fusion-tls.key"
    # [console]                           # the operator console (fusion.console); users: `earwitness console adduser`
    # listen = "127.0.0.1:8080"
    # layers = ["streets.geojson"]        # the city's own map layers, in the registry's frame (fusion.console.citymap)
    # basemap = "city.pmtiles"            # or .mbtiles: raster tiles for a lat/lon site
    # tls_cert = "console.pem"; tls_key = "console.key"   # HTTPS (cookies Secure)
    # idle_s = 1800                       # a session unused this long ends
    # areas = "areas.geojson"             # neighbourhoods: transparency dashboard (earwitness stats), unreported page

A broker that cannot be reached at start (not up yet, restarting) is tried again, a one-line
warning each time, waiting longer each time up to 5 s, until it answers or the server is stopped
(SIGTERM, Ctrl-C: exit 0 within about a second, ending a connect attempt under way; the alerts
not sent stay in the outbox), as the running server reconnects.  A broker URL that cannot work (a
wrong scheme, a host name the name server says does not exist) fails at once, one line, exit 2,
and so does a TLS file ([tls], the console's tls_cert/tls_key) that cannot be read.

The server signs its audit log (every incident revision, hash-chained: ``earwitness audit
verify``) and the evidence bundles (``earwitness evidence``) with its Ed25519 key,
``signing_key``.  If the file is absent at start the server makes one (mode 0600, the public
half in ``<file>.pub``) and logs one line saying so: keep it and publish the ``.pub``; anyone
checking a bundle or the log compares the key they were signed with to it.
"""
from __future__ import annotations

import dataclasses
import faulthandler
import logging
import math
import pathlib
import signal
import threading

from earwitness.cli import UserError
from earwitness.redact import mask_logging

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

MODES = ("2d", "2.5d", "3d")
CAP_STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
TLS_KEYS = ("ca", "cert", "key")
SIGNAL_POLL_S = 0.5
# A stop that takes longer than this writes every thread's stack to stderr: a hung stop says where.
STOP_STACKS_S = 20.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# key -> (type(s), required)
SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "site": ((str,), True), "broker": ((str,), True), "registry": ((str,), True),
    "database": ((str,), False), "schema": ((str,), False), "client_id": ((str,), False),
    "shared_group": ((str,), False), "temperature_c": ((int, float), False), "mode": ((str,), False),
    "margin_s": ((int, float), False), "webhook": ((str,), False), "cap_sender": ((str,), False),
    "cap_status": ((str,), False), "tls": ((dict,), False), "workers": ((int,), False),
    "worker_index": ((int,), False), "cell_m": ((int, float), False), "halo_m": ((int, float), False),
    "request_clips": ((bool,), False), "max_range_m": ((int, float), False), "health_s": ((int, float), False),
    "cameras": ((str,), False), "buildings": ((str,), False), "signing_key": ((str,), False),
    "console": ((dict,), False), "timezone": ((str,), False), "connect_timeout_s": ((int, float), False),
    "wind_mps": ((int, float), False), "wind_from_deg": ((int, float), False), "frame_m": ((int, float), False),
}
DEFAULT_SIGNING_KEY = "fusion.key"


def add_arguments(parser):
    parser.add_argument("--config", required=True, metavar="FILE", help="fusion.toml")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def load_config(path: str | pathlib.Path):
    """Read and validate the TOML configuration; UserError (one line) on any problem."""
    from fusion.server.service import FusionConfig

    path = pathlib.Path(path)
    data = _read(path)
    _check(path, data)
    tls = _tls_paths(path, data.get("tls"))
    database = data.get("database", "fusion.db")
    if "://" not in database:
        database = str(path.parent / database)
    fields = {f.name for f in dataclasses.fields(FusionConfig)}
    values = {k: v for k, v in data.items() if k in fields}
    values.update(registry=path.parent / data["registry"], database=database, tls=tls)
    values.update({k: path.parent / data[k] for k in ("cameras", "buildings") if k in data})
    values.update(signing_key=path.parent / data.get("signing_key", DEFAULT_SIGNING_KEY))
    values["console"] = _console_settings(path, data.get("console"))
    values["console_listen"] = values["console"].listen if values["console"] else None
    values["console_city"] = _console_city(path, data.get("console"))
    return FusionConfig(**values)


def _console_settings(path: pathlib.Path, console: dict | None):
    """[console]'s settings (fusion.console.settings), checked (the TLS files loaded); None without the table."""
    from fusion.console.settings import SettingsError, check_tls, parse_settings

    if console is None:
        return None
    try:
        settings = parse_settings(path.parent, console)
        if settings.tls:
            check_tls(settings.tls_cert, settings.tls_key)
        return settings
    except SettingsError as exc:
        raise UserError(f"{path}: {exc}") from None


def _console_city(path: pathlib.Path, console: dict | None):
    """[console]'s layers and basemap, each file read and checked now (fusion.console.citymap.CityMap)."""
    from fusion.console.citymap import CityMapError, city_map

    try:
        return city_map(path.parent, console or {})
    except CityMapError as exc:
        raise UserError(f"{path}: {exc}") from None


def _read(path: pathlib.Path) -> dict:
    """The settings, each known and of its type, the required ones there."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    unknown = set(data) - set(SCHEMA)
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    for key, (types, required) in SCHEMA.items():
        if key not in data:
            if required:
                raise UserError(f"{path}: missing setting {key!r}")
            continue
        value = data[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise UserError(f"{path}: {key} must be a {' or '.join(t.__name__ for t in types)}")
    return data


def _check_broker(path: pathlib.Path, data: dict) -> None:
    """The broker URL parses, and [tls] goes with a broker that uses it."""
    from fusion.transport.mqttlink import parse_mqtt_url
    from fusion.transport.natslink import is_nats_url, parse_nats_urls

    try:
        parse_nats_urls(data["broker"]) if is_nats_url(data["broker"]) else parse_mqtt_url(data["broker"])
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    if "tls" in data and is_nats_url(data["broker"]):
        # The NATS link connects without these files: refuse rather than run unencrypted unnoticed.
        raise UserError(f"{path}: [tls] applies to an mqtts:// broker; a NATS broker's TLS is not supported")


def _check(path: pathlib.Path, data: dict) -> None:
    """The settings' values within their ranges."""
    site = data["site"]
    if not site or any(c in site for c in "/+#"):
        raise UserError(f"{path}: site must be a non-empty name without / + #")
    _check_broker(path, data)
    if data.get("mode", "2d") not in MODES:
        raise UserError(f"{path}: mode must be one of {', '.join(MODES)}")
    if data.get("cap_status", "Actual") not in CAP_STATUSES:
        raise UserError(f"{path}: cap_status must be one of {', '.join(CAP_STATUSES)}")
    for key in ("temperature_c", "margin_s"):
        if key in data and not math.isfinite(data[key]):
            raise UserError(f"{path}: {key} must be finite")
    if data.get("margin_s", 1.0) < 0:
        raise UserError(f"{path}: margin_s must be >= 0")
    for key in ("health_s", "connect_timeout_s"):
        if not 0 < data.get(key, 1.0) < math.inf:
            raise UserError(f"{path}: {key} must be a positive number of seconds")
    if not 0 < data.get("max_range_m", 1.0) < math.inf:
        raise UserError(f"{path}: max_range_m must be a positive distance in metres")
    workers = data.get("workers", 1)
    if workers < 1 or not 0 <= data.get("worker_index", 0) < workers:
        raise UserError(f"{path}: need workers >= 1 and 0 <= worker_index < workers")
    if data.get("cell_m", 1.0) <= 0 or data.get("halo_m", 0.0) < 0:
        raise UserError(f"{path}: need cell_m > 0 and halo_m >= 0")
    _check_zone(path, data.get("timezone"))
    _check_wind(path, data)


def _check_wind(path: pathlib.Path, data: dict) -> None:
    """wind_mps and wind_from_deg together, a plausible speed and a compass bearing; frame_m >= 0."""
    from fusion.locator.uncertainty import frame_problem
    from fusion.locator.wind import wind_problem

    if ("wind_mps" in data) != ("wind_from_deg" in data):
        raise UserError(f"{path}: wind_mps and wind_from_deg go together (the wind's speed and the bearing it blows from)")
    if "wind_mps" in data and wind_problem(data["wind_mps"], data["wind_from_deg"]):
        raise UserError(f"{path}: {wind_problem(data['wind_mps'], data['wind_from_deg'])}")
    if frame_problem(data.get("frame_m", 0.0)):
        raise UserError(f"{path}: {frame_problem(data['frame_m'])}")


def _check_zone(path: pathlib.Path, zone: str | None) -> None:
    """timezone = an IANA name this machine knows (the reports' local time)."""
    from fusion.report_content import check_zone

    if zone is not None:
        try:
            check_zone(zone)
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None


def _tls_paths(path: pathlib.Path, tls: dict | None) -> dict | None:
    """[tls]'s files, relative to the configuration's folder, each read now (ssl, once connecting,
    would say "Permission denied" without the file or the setting)."""
    from earwitness.files import file_problem

    if tls is None:
        return None
    bad = set(tls) - set(TLS_KEYS)
    if bad or not all(isinstance(v, str) for v in tls.values()):
        raise UserError(f"{path}: [tls] takes string paths {', '.join(TLS_KEYS)} only")
    files = {k: path.parent / v for k, v in tls.items()}
    for key, file in files.items():
        problem = file_problem(file)
        if problem:
            raise UserError(f"{path}: tls.{key}: {problem}")
    return {k: str(v) for k, v in files.items()}


def _check_broker_hosts(path, broker: str) -> None:
    """UserError if the name server says a broker's host name does not exist (a typo: waiting cannot help)."""
    from earwitness.hosts import unknown_host
    from fusion.transport.mqttlink import parse_mqtt_url
    from fusion.transport.natslink import is_nats_url, parse_nats_urls, split_nats_url

    if is_nats_url(broker):
        hosts = [split_nats_url(u)[:2] for u in parse_nats_urls(broker)]
    else:
        hosts = [parse_mqtt_url(broker)[:2]]
    for host, port in hosts:
        reason = unknown_host(host, port)
        if reason:
            raise UserError(f"{path}: broker {broker}: host {host!r} not found ({reason})")


def run(args) -> int:
    import sqlalchemy as sa

    from fusion.forensics.cameras import CamerasError
    from fusion.forensics.geojson import GeoJSONError
    from fusion.server.audit import SigningKeyError
    from fusion.server.registry import RegistryError
    from fusion.server.service import StartCancelled
    from fusion.transport import fusion_service

    mask_logging(args.log_level, LOG_FORMAT)
    config = load_config(args.config)
    _check_broker_hosts(args.config, config.broker)
    # Before the start: a SIGTERM while starting (a supervisor that gave up waiting) still stops cleanly.
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if config.workers > 1 and config.database.startswith(("postgresql://", "postgres://")):
        return _run_slots(config, done)
    try:
        service = fusion_service(config)
    except (RegistryError, CamerasError, GeoJSONError) as exc:
        raise UserError(str(exc)) from None
    except (ValueError, sa.exc.SQLAlchemyError) as exc:
        raise UserError(f"database {config.database!r}: {str(exc).splitlines()[0]}") from None
    try:
        service.start(cancel=done)
    except StartCancelled as exc:
        service.store.close()
        logging.getLogger("fusion").info("%s", exc)
        return 0
    except SigningKeyError as exc:
        service.link.stop()
        service.store.close()
        raise UserError(str(exc)) from None
    console = _start_console(config, service)
    logging.getLogger("fusion").info("fusion server for site %s running; %d nodes registered",
                                     config.site, len(service.registry.positions))
    while not done.wait(SIGNAL_POLL_S):
        pass
    faulthandler.dump_traceback_later(STOP_STACKS_S)
    if console is not None:
        console.stop()
    service.stop()
    faulthandler.cancel_dump_traceback_later()
    counts = dict(service.ingest.rejected)
    logging.getLogger("fusion").info("stopped: %d pulses accepted, rejected %s, %d alerts",
                                     service.ingest.accepted, counts, service.alerts_published)
    return 0


def _run_slots(config, done: threading.Event) -> int:
    """Several workers on one PostgreSQL store: run the slots this process holds the lease of, and
    take over those of workers that died (:mod:`fusion.transport.slots`)."""
    import sqlalchemy as sa

    from fusion.server.audit import SigningKeyError
    from fusion.server.registry import RegistryError
    from fusion.server.service import StartCancelled
    from fusion.transport.slots import SlotRunner

    try:
        runner = SlotRunner(config, stop=done)
        runner.start()
    except StartCancelled as exc:
        runner.stop()
        logging.getLogger("fusion").info("%s", exc)
        return 0
    except (RegistryError, SigningKeyError) as exc:
        raise UserError(str(exc)) from None
    except sa.exc.SQLAlchemyError as exc:
        raise UserError(f"database {config.database!r}: {str(exc).splitlines()[0]}") from None
    logging.getLogger("fusion").info("fusion server for site %s running: slot(s) %s of %d", config.site,
                                     sorted(runner.services), config.workers)
    while not done.wait(SIGNAL_POLL_S):
        pass
    faulthandler.dump_traceback_later(STOP_STACKS_S)
    runner.stop()
    faulthandler.cancel_dump_traceback_later()
    logging.getLogger("fusion").info("stopped: %d slot(s) taken over", runner.takeovers)
    return 0


def _start_console(config, service):
    """The operator console on [console] listen, if set; UserError (service stopped) if it cannot listen."""
    import secrets

    from fusion.console.app import console_app
    from fusion.console.server import ConsoleServer
    from fusion.server.store import Store

    settings = config.console
    if settings is None:
        return None
    # Its own connections: the service closes its store at stop.  Sessions are signed with a key
    # made at each start, so a restart signs everyone out.
    # People's actions (reviews, logins) go to the server's hash-chained audit log.
    on_action = service.audit.append if service.audit is not None else None
    try:
        app = console_app(Store(config.database, schema=config.schema), service.registry, service.live,
                          secret=secrets.token_bytes(32), on_action=on_action, idle_s=settings.idle_s,
                          https=settings.tls, areas=settings.areas, city=config.console_city)
        server = ConsoleServer(app, settings.listen, settings.tls_cert, settings.tls_key).start()
    except (OSError, ValueError, RuntimeError) as exc:   # cannot listen; map files in another frame; no map library
        service.stop()
        raise UserError(str(exc)) from None
    logging.getLogger("fusion").info("console on %s://%s/", "https" if settings.tls else "http", settings.listen)
    return server
