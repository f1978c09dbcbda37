"""``earwitness locate``: unassociated pulses JSONL in, incidents JSONL out, classified.

As in the fusion server, each located incident is classified
(:func:`fusion.locator.classify.classify`) from the pulses its shots used
(:func:`fusion.locator.attribution.shot_arrivals`).
"""
from __future__ import annotations

import json
import math
import sys

import numpy as np

from earwitness.cli import UserError
from fusion.locator.attribution import shot_arrivals
from fusion.locator.classify import classify
from fusion.locator.locate import locate_pulses, min_burst_sensors, shock_waves
from fusion.locator.multilaterate import MODES
from fusion.locator.pulses import Pulses, read_pulses
from fusion.locator.sensors import SensorsError, read_sensors
from fusion.tracking.reach import incident_c_m_s

# Exit status when some input pulses were left out but the rest was located.
EXIT_SOME_PULSES_LEFT_OUT = 1


def add_arguments(parser) -> None:
    parser.add_argument("pulses", metavar="PULSES.jsonl", help="pulses JSONL ('-' for stdin)")
    parser.add_argument("--sensors", required=True, metavar="SENSORS.csv",
                        help="sensor positions: header sensor,x,y,z or sensor,lat,lon,alt")
    parser.add_argument("--temperature-c", type=float, metavar="T",
                        help="air temperature in degC (default: speed of sound estimated per incident)")
    parser.add_argument("--mode", choices=MODES, default="2d",
                        help="geometry of the fit: 2d (default), 2.5d (source at --ground-z) or 3d")
    parser.add_argument("--ground-z", type=float, metavar="Z",
                        help="source height for --mode 2.5d, local z metres (default: lowest sensor used)")


def run(args) -> int:
    if args.temperature_c is not None and not math.isfinite(args.temperature_c):
        raise UserError(f"--temperature-c must be a finite number, not {args.temperature_c}")
    try:
        sensors = read_sensors(args.sensors)
    except SensorsError as exc:
        raise UserError(str(exc)) from None
    need = min_burst_sensors(args.mode)  # a burst's rounds share one place: d + 1 sensors fix it
    if len(sensors) < need:
        raise UserError(f"{args.sensors} lists {len(sensors)} sensors; {args.mode} location needs at least {need}")
    pulses = read_pulses("/dev/stdin" if args.pulses == "-" else args.pulses, sensors)
    for message in pulses.problems + pulses.duplicates:
        print(f"earwitness locate: warning: {args.pulses} {message}", file=sys.stderr)
    reporting = len(set(pulses.sensor.tolist()))
    if reporting < need:
        raise UserError(f"{args.pulses}: {len(pulses)} usable pulses from {reporting} sensors; "
                        f"{args.mode} location needs at least {need} sensors")
    try:
        incidents = locate_pulses(pulses, sensors, args.temperature_c, mode=args.mode, ground_z_m=args.ground_z)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    cracks = int(shock_waves(pulses, sensors).sum())
    if cracks:
        print(f"earwitness locate: note: {cracks} pulses taken for supersonic bullet cracks, kept out of location",
              file=sys.stderr)
    records = _records(pulses, sensors)
    for incident in incidents:
        incident.update(classify(incident, shot_arrivals(incident, records, sensors, incident_c_m_s(incident)),
                                 sensors))
        sys.stdout.write(json.dumps(incident) + "\n")
    sys.stdout.flush()
    if not incidents:
        print(f"earwitness locate: warning: no shot located among {len(pulses)} pulses from {reporting} sensors",
              file=sys.stderr)
    return EXIT_SOME_PULSES_LEFT_OUT if pulses.problems else 0


def _records(pulses: Pulses, sensors) -> list[dict]:
    """The accepted pulses as the dicts (with ``id``) the attribution and classifier read."""
    out = []
    for i in range(len(pulses)):
        p = {"id": i, "sensor": sensors.ids[pulses.sensor[i]], "t_ns": int(pulses.t_ns[i])}
        for key, value in (("t_unc_ns", pulses.t_unc_ns[i]), ("snr_db", pulses.snr_db[i]),
                           ("peak_dbfs", pulses.peak_dbfs[i])):
            if np.isfinite(value):
                p[key] = float(value)
        features = {k: float(v[i]) for k, v in pulses.features.items() if np.isfinite(v[i])}
        if features:
            p["features"] = features
        out.append(p)
    return out
