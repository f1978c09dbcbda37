"""Scenario files (TOML): an array, the weather, the city around it, and timed events.

A scenario is everything needed to reproduce a simulated night exactly: all randomness is
drawn from generators seeded by (scenario seed, purpose, event, sensor), so rendering a
subset of the sensors gives the same audio for those sensors as rendering all of them.
See ``simulator/scenarios/*.toml`` for the format; :func:`load` validates a file and raises
:class:`ScenarioError` with a one-line message naming the file and the offending entry.
"""
from __future__ import annotations

import datetime as dt
import math
import pathlib
from dataclasses import dataclass, field

import numpy as np
import tomllib

from earwitness.units import NS_PER_S
from simulator import arrays, sensors, sources
from simulator.propagation import ZONE_LEVEL_DB, Atmosphere, Environment, Wall

LIBRARY = pathlib.Path(__file__).resolve().parent / "scenarios"
SHOOTER_HEIGHT_M = 1.5

# Random streams, one per purpose, so adding one kind of draw never shifts another.
STREAM_EMISSIONS, STREAM_SENSORS, STREAM_WALLS, STREAM_NLOS, STREAM_ECHOES, STREAM_RANDOM_EVENTS, STREAM_GLITCH = range(7)
STREAM_FLEET, STREAM_NOISE, STREAM_WEATHER = 7, 8, 9

# Bullets for the supersonic crack: (diameter m, length m), Whitham's formula needs both.
CALIBERS = {"5.56": (5.7e-3, 23e-3), "7.62": (7.8e-3, 28e-3), "9mm": (9.0e-3, 15e-3), ".45": (11.5e-3, 17e-3)}

COMMON_KEYS = {"t_s", "kind", "x", "y", "z", "lat", "lon", "alt", "shooter", "incident", "azimuth_deg", "level_db"}
KIND_KEYS = {
    "handgun": {"rounds", "interval_s", "rate_rpm", "times_s", "bullet_mps", "elevation_deg", "range_m", "caliber"},
    "firecrackers": {"count"}, "fireworks": set(), "backfire": {"count"}, "door_slam": set(),
    "dumpster": set(), "nail_gun": {"count"}, "hammering": {"count"}, "bag_pop": set(),
}
KIND_KEYS["rifle"] = KIND_KEYS["handgun"]
WALL_SPREAD_M = (5.0, 60.0)       # random building faces this far from an event
WALL_LENGTH_M = (10.0, 50.0)


class ScenarioError(ValueError):
    """A scenario that cannot be used, with a one-line reason."""


@dataclass
class Crack:
    bullet_mps: float
    azimuth_deg: float
    elevation_deg: float
    range_m: float
    diameter_m: float
    length_m: float


@dataclass
class Event:
    """One timed event: a shooter's burst, a firecracker string, a slammed door."""

    index: int
    t_s: float
    kind: str
    pos: np.ndarray
    params: dict
    shooter: str | None = None
    incident: str | None = None
    azimuth_deg: float | None = None
    crack: Crack | None = None

    @property
    def gunfire(self) -> bool:
        return self.kind in sources.GUNFIRE


@dataclass
class Scenario:
    name: str
    path: pathlib.Path | None
    start_ns: int
    duration_s: float
    seed: int
    utc_offset_h: float
    atmosphere: Atmosphere
    array: arrays.Array
    sensor_settings: dict
    environment: Environment
    zone: str
    walls_per_event: int
    events: list[Event] = field(default_factory=list)
    _emissions: dict = field(default_factory=dict, repr=False)
    _models: list | None = field(default=None, repr=False)

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    @property
    def local_hour(self) -> float:
        t = self.start_ns / NS_PER_S + self.utc_offset_h * 3600.0
        return (t % 86400.0) / 3600.0

    def emissions(self, ev: Event) -> list[sources.Emission]:
        """The event's emissions (drawn once, from the event's own stream)."""
        if ev.index not in self._emissions:
            self._emissions[ev.index] = sources.make_emissions(ev.kind, self.rng(STREAM_EMISSIONS, ev.index), **ev.params)
        return self._emissions[ev.index]

    def sensor_models(self) -> list[sensors.SensorModel]:
        """Every sensor's hardware model, in array order (sensor i from stream (seed, SENSORS, i))."""
        if self._models is None:
            self._models = [sensors.draw_sensor_model(self.rng(STREAM_SENSORS, i), **self.sensor_settings)
                            for i in range(len(self.array))]
        return self._models

    def environment_for(self, ev: Event) -> Environment:
        """The environment around an event: the scenario's walls plus a few random building faces near it."""
        rng = self.rng(STREAM_WALLS, ev.index)
        walls = list(self.environment.walls)
        for _ in range(self.walls_per_event):
            dist = rng.uniform(*WALL_SPREAD_M)
            bearing = rng.uniform(0.0, 2.0 * math.pi)
            cx, cy = ev.pos[0] + dist * math.sin(bearing), ev.pos[1] + dist * math.cos(bearing)
            half = rng.uniform(*WALL_LENGTH_M) / 2.0
            # Facing the event, give or take: a street's building fronts.
            face = bearing + math.pi / 2.0 + rng.normal(0.0, 0.3)
            dx, dy = half * math.sin(face), half * math.cos(face)
            walls.append(Wall(cx - dx, cy - dy, cx + dx, cy + dy, float(rng.uniform(6.0, 30.0)), float(rng.uniform(0.6, 0.95))))
        return Environment(**{**self.environment.__dict__, "walls": walls})

    def noise_level_db(self, model: sensors.SensorModel) -> float:
        from simulator.propagation import background_level_db

        return background_level_db(self.zone, self.local_hour) + model.noise_offset_db

    def truth(self) -> list[dict]:
        """True discharges and other emissions: one dict per emission, in time order.

        ``{"t_ns", position, "kind", "class", "gunfire", "event", "incident", "shooter", "round"}``
        with the position in the array's frame; ``class`` is "gunshot" for firearms.
        """
        rows = []
        for ev in self.events:
            for k, em in enumerate(self.emissions(ev)):
                pos = ev.pos + np.array([0.0, 0.0, em.dz_m])
                rows.append({
                    "t_ns": self.start_ns + int(round((ev.t_s + em.t_s) * NS_PER_S)),
                    **self.array.position(pos),
                    "kind": ev.kind, "class": "gunshot" if ev.gunfire else ev.kind, "gunfire": ev.gunfire,
                    "event": ev.index, "incident": ev.incident, "shooter": ev.shooter, "round": k + 1,
                    "level_db": round(em.peak_db, 1),
                })
        rows.sort(key=lambda r: r["t_ns"])
        return rows


# --- loading and validation ----------------------------------------------------------------

def _num(where: str, table: dict, key: str, default=None, lo=-math.inf, hi=math.inf, required=False) -> float | None:
    if key not in table:
        if required:
            raise ScenarioError(f"{where}: missing {key}")
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ScenarioError(f"{where}: {key} must be a number, got {v!r}")
    if not lo <= v <= hi:
        raise ScenarioError(f"{where}: {key} = {v} is outside [{lo}, {hi}]")
    return float(v)


def _parse_time(where: str, text) -> int:
    try:
        t = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(f"{where}: start_utc {text!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    whole = t.replace(microsecond=0)
    return int(whole.timestamp()) * NS_PER_S + t.microsecond * 1000


def load(path) -> Scenario:
    """Read and validate a scenario file; relative file names inside it are relative to it.

    A name without a slash or suffix that is not a file is looked up in the library
    (``simulator/scenarios/NAME.toml``).
    """
    p = pathlib.Path(path)
    if not p.exists() and p.suffix == "" and "/" not in str(path):
        p = LIBRARY / f"{path}.toml"
    try:
        with open(p, "rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file (library: {', '.join(library_names())})") from None
    return from_dict(doc, p)


def library_names() -> list[str]:
    """Names of the scenarios in the library, sorted."""
    return sorted(f.stem for f in LIBRARY.glob("*.toml"))


TOP_KEYS = {"name", "description", "start_utc", "duration_s", "seed", "utc_offset_h", "atmosphere", "array",
            "sensors", "environment", "events", "random_events"}


def from_dict(doc: dict, path: pathlib.Path | None = None) -> Scenario:
    """Build a :class:`Scenario` from a parsed TOML document (see :func:`load`)."""
    w = str(path or "scenario")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ScenarioError(f"{w}: unknown key {sorted(unknown)[0]!r}")
    base = path.parent if path else pathlib.Path(".")
    start_ns = _parse_time(w, doc.get("start_utc", "2026-07-04T21:00:00Z"))
    duration_s = _num(w, doc, "duration_s", required=True, lo=1.0, hi=7 * 86400.0)
    seed = int(_num(w, doc, "seed", 0, lo=0))
    atm_t = _table(w, doc, "atmosphere")
    atmosphere = Atmosphere(
        temperature_c=_num(f"{w} [atmosphere]", atm_t, "temperature_c", 20.0, -40.0, 50.0),
        humidity_pct=_num(f"{w} [atmosphere]", atm_t, "humidity_pct", 70.0, 0.0, 100.0),
        pressure_kpa=_num(f"{w} [atmosphere]", atm_t, "pressure_kpa", 101.325, 50.0, 110.0),
        wind_mps=_num(f"{w} [atmosphere]", atm_t, "wind_mps", 0.0, 0.0, 40.0),
        wind_from_deg=_num(f"{w} [atmosphere]", atm_t, "wind_from_deg", 270.0, -360.0, 360.0))
    array = _array(w, _table(w, doc, "array"), base, seed)
    sens_t = dict(_table(w, doc, "sensors"))
    try:
        sensors.draw_sensor_model(np.random.default_rng(0), **sens_t)
    except (ValueError, TypeError) as exc:
        raise ScenarioError(f"{w} [sensors]: {exc}") from None
    env_t = dict(_table(w, doc, "environment"))
    zone = env_t.pop("zone", "residential")
    if zone not in ZONE_LEVEL_DB:
        raise ScenarioError(f"{w} [environment]: unknown zone {zone!r} (expected one of {', '.join(ZONE_LEVEL_DB)})")
    walls_per_event = int(_num(f"{w} [environment]", env_t, "walls_per_event", 3, 0, 50))
    env_t.pop("walls_per_event", None)
    walls = []
    for i, wt in enumerate(env_t.pop("walls", [])):
        ww = f"{w} [environment] wall {i + 1}"
        walls.append(Wall(*(_num(ww, wt, k, required=True) for k in ("x0", "y0", "x1", "y1")),
                          _num(ww, wt, "height_m", 15.0, 0.1), _num(ww, wt, "reflection", 0.8, 0.0, 1.0)))
    if "nlos_delay_ms" in env_t:
        env_t["nlos_delay_ms"] = tuple(env_t["nlos_delay_ms"])
    try:
        environment = Environment(walls=walls, **env_t)
    except TypeError as exc:
        raise ScenarioError(f"{w} [environment]: {exc}") from None
    scn = Scenario(doc.get("name", path.stem if path else "scenario"), path, start_ns, duration_s, seed,
                   _num(w, doc, "utc_offset_h", 0.0, -14.0, 14.0), atmosphere, array, sens_t, environment,
                   zone, walls_per_event)
    events = [_event(f"{w} event {i + 1}", e, array) for i, e in enumerate(doc.get("events", []))]
    for i, r in enumerate(doc.get("random_events", [])):
        events += _random_events(f"{w} random_events {i + 1}", r, scn, i)
    events.sort(key=lambda e: e.t_s)
    for i, ev in enumerate(events):
        ev.index = i
        if not 0 <= ev.t_s <= duration_s:
            raise ScenarioError(f"{w}: an event at t_s = {ev.t_s} is outside the scenario's {duration_s} s")
    scn.events = events
    for ev in events:
        try:
            scn.emissions(ev)
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"{w}: event {ev.kind} at {ev.t_s} s: {exc}") from None
    return scn


def _table(w, doc, key) -> dict:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise ScenarioError(f"{w}: [{key}] must be a table")
    return t


def _array(w: str, t: dict, base: pathlib.Path, seed: int) -> arrays.Array:
    where = f"{w} [array]"
    layout = t.get("layout", "grid")
    origin = t.get("origin")
    if origin is not None:
        if not (isinstance(origin, list) and len(origin) == 3):
            raise ScenarioError(f"{where}: origin must be [lat, lon, alt]")
        origin = tuple(float(v) for v in origin)
    dens = {k: _num(where, t, k) for k in ("density_per_sq_mi", "density_per_km2") if k in t}
    try:
        if layout == "grid":
            arr = arrays.grid(_num(where, t, "width_m", required=True), _num(where, t, "height_m", required=True),
                              _num(where, t, "spacing_m"), _num(where, t, "z_m", arrays.ROOFTOP_M), **dens)
        elif layout == "random":
            arr = arrays.random_layout(_num(where, t, "width_m", required=True), _num(where, t, "height_m", required=True),
                                       np.random.default_rng([seed, 99]), _num(where, t, "z_m", arrays.ROOFTOP_M),
                                       min_spacing_m=_num(where, t, "min_spacing_m", 0.0, 0.0), **dens)
        elif layout in ("csv", "geojson"):
            if "file" not in t:
                raise ScenarioError(f"{where}: layout {layout} needs file = ...")
            reader = arrays.read_csv if layout == "csv" else arrays.read_geojson
            arr = reader(base / t["file"], origin)
            origin = arr.origin
        else:
            raise ScenarioError(f"{where}: unknown layout {layout!r} (grid, random, csv, geojson)")
    except arrays.ArrayError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    if origin is not None:
        arr.origin = origin
    return arr


def _event(w: str, e: dict, array: arrays.Array) -> Event:
    kind = e.get("kind")
    if kind not in sources.KINDS:
        raise ScenarioError(f"{w}: unknown kind {kind!r} (expected one of {', '.join(sources.KINDS)})")
    unknown = set(e) - COMMON_KEYS - KIND_KEYS[kind]
    if unknown:
        raise ScenarioError(f"{w}: unknown key {sorted(unknown)[0]!r} for a {kind}")
    t_s = _num(w, e, "t_s", required=True, lo=0.0)
    pos = _event_position(w, e, array)
    params: dict = {}
    if "level_db" in e:
        params["level_db"] = _num(w, e, "level_db", lo=60.0, hi=200.0)
    if "count" in e:
        params["count"] = int(_num(w, e, "count", lo=1, hi=10000))
    crack = _gunfire(w, e, params) if kind in sources.GUNFIRE else None
    return Event(-1, t_s, kind, pos, params, e.get("shooter"), e.get("incident"), _num(w, e, "azimuth_deg"), crack)


def _event_position(w: str, e: dict, array: arrays.Array) -> np.ndarray:
    if "lat" in e or "lon" in e:
        if array.origin is None:
            raise ScenarioError(f"{w}: lat/lon needs a WGS84 array (an origin or a lat/lon sensors file)")
        return arrays.to_local(_num(w, e, "lat", required=True, lo=-90, hi=90), _num(w, e, "lon", required=True, lo=-180, hi=180),
                               _num(w, e, "alt", array.origin[2] + SHOOTER_HEIGHT_M), array.origin)[0]
    return np.array([_num(w, e, "x", required=True), _num(w, e, "y", required=True), _num(w, e, "z", SHOOTER_HEIGHT_M)])


def _gunfire(w: str, e: dict, params: dict) -> Crack | None:
    """A gunfire event's rounds and their times into ``params``; its bullet's crack, if it has one."""
    crack = None
    if "times_s" in e:
        ts = e["times_s"]
        if not isinstance(ts, list) or not ts or not all(isinstance(v, (int, float)) and v >= 0 for v in ts):
            raise ScenarioError(f"{w}: times_s must be a list of non-negative offsets")
        params["times_s"] = sorted(float(v) for v in ts)
    else:
        params["rounds"] = int(_num(w, e, "rounds", 1, 1, 1000))
        if "rate_rpm" in e:
            params["interval_s"] = 60.0 / _num(w, e, "rate_rpm", lo=1.0, hi=3000.0)
        else:
            params["interval_s"] = _num(w, e, "interval_s", 0.3, 0.02, 60.0)
    if "bullet_mps" in e:
        cal = e.get("caliber", "5.56")
        if cal not in CALIBERS:
            raise ScenarioError(f"{w}: unknown caliber {cal!r} (expected one of {', '.join(CALIBERS)})")
        if "azimuth_deg" not in e:
            raise ScenarioError(f"{w}: a bullet needs azimuth_deg (the direction of fire)")
        crack = Crack(_num(w, e, "bullet_mps", lo=100.0, hi=1500.0), _num(w, e, "azimuth_deg"),
                      _num(w, e, "elevation_deg", 0.0, -90.0, 90.0), _num(w, e, "range_m", 1000.0, 1.0, 5000.0),
                      *CALIBERS[cal])
    return crack


def _random_events(w: str, r: dict, scn: Scenario, stream: int) -> list[Event]:
    """``count`` events of one kind at uniformly random times and places over the array (or a ``region``).

    Any event key of that kind (``rounds``, ``level_db``...) applies to each event;
    ``per_event_count`` is the kind's own ``count`` (crackers in a string, nails driven).
    """
    kind = r.get("kind")
    if kind not in sources.KINDS:
        raise ScenarioError(f"{w}: unknown kind {kind!r} (expected one of {', '.join(sources.KINDS)})")
    passed = (COMMON_KEYS | KIND_KEYS[kind]) - {"t_s", "x", "y", "z", "lat", "lon", "alt", "kind", "count"}
    unknown = set(r) - {"kind", "count", "region", "t0_s", "t1_s", "per_event_count"} - passed
    if unknown:
        raise ScenarioError(f"{w}: unknown key {sorted(unknown)[0]!r}")
    count = int(_num(w, r, "count", required=True, lo=0, hi=100000))
    xy = scn.array.xyz[:, :2]
    region = r.get("region", [*xy.min(axis=0), *xy.max(axis=0)])
    if not (isinstance(region, list) and len(region) == 4):
        raise ScenarioError(f"{w}: region must be [x0, y0, x1, y1]")
    t0 = _num(w, r, "t0_s", 0.0, 0.0)
    t1 = _num(w, r, "t1_s", max(t0, scn.duration_s - 5.0), t0)
    rng = scn.rng(STREAM_RANDOM_EVENTS, stream)
    out = []
    for _ in range(count):
        spec = {"kind": kind, "t_s": float(rng.uniform(t0, t1)),
                "x": float(rng.uniform(region[0], region[2])), "y": float(rng.uniform(region[1], region[3]))}
        spec.update({k: v for k, v in r.items() if k in passed})
        if "per_event_count" in r:
            spec["count"] = r["per_event_count"]
        out.append(_event(w, spec, scn.array))
    return out
