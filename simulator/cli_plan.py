"""``earwitness plan --sensors SENSORS.csv [--area AREA.geojson] [--grid-m M] [--add K] [--remove ID,...] --out DIR``.

Coverage planning from the simulator's physics and the locator's error budget
(:mod:`simulator.plan`): per grid cell the probability that enough sensors hear a handgun to
locate it, and the expected 95 % error there. Writes ``plan.csv``, ``plan.geojson`` (cells),
``coverage.png`` (heat maps), ``summary.json`` and, with ``--add K``, ``suggested.csv`` (the K
sensors that raise coverage most, greedy) with the figures before and after. ``--remove``
takes sensors out first (what if they move). The area's GeoJSON is longitude, latitude for
WGS84 sensors, x, y metres for local ones.
"""
from __future__ import annotations

import math
import pathlib

from earwitness.cli import UserError

DEFAULT_GRID_M = 100.0
CANDIDATE_STRIDE = 2          # suggested sensors are sought on every 2nd cell of the grid
MAX_CELLS = 40_000


def add_arguments(parser) -> None:
    from simulator.plan import DEFAULT_NEED, HANDGUN_MEDIAN_DB
    from simulator.propagation import ZONE_LEVEL_DB

    parser.add_argument("--sensors", required=True, metavar="SENSORS.csv", help="sensor,x,y,z or sensor,lat,lon,alt")
    parser.add_argument("--area", metavar="AREA.geojson", help="the area to plan (default: the sensors' box + 500 m)")
    parser.add_argument("--grid-m", type=float, default=DEFAULT_GRID_M, help=f"cell size (default {DEFAULT_GRID_M:g} m)")
    parser.add_argument("--add", type=int, default=0, metavar="K", help="suggest K new sensor positions")
    parser.add_argument("--remove", metavar="ID,...", help="take these sensors out first")
    parser.add_argument("--zone", default="residential", choices=sorted(ZONE_LEVEL_DB), help="background noise of the place")
    parser.add_argument("--hour", type=float, default=22.0, help="local hour of day, 0-24 (default 22: a night)")
    parser.add_argument("--temperature-c", type=float, default=20.0, help="air temperature (default 20)")
    parser.add_argument("--level-db", type=float, default=HANDGUN_MEDIAN_DB,
                        help=f"muzzle blast peak at 1 m, dB SPL (default {HANDGUN_MEDIAN_DB:g}: a handgun)")
    parser.add_argument("--need", type=int, default=DEFAULT_NEED,
                        help=f"sensors that must hear a shot to locate it (default {DEFAULT_NEED}; "
                             "the live server alerts at one more)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")


def _check(args) -> None:
    if not (math.isfinite(args.grid_m) and args.grid_m > 0):
        raise UserError("--grid-m must be a positive number of metres")
    if args.add < 0 or args.need < 1:
        raise UserError("--add must be >= 0 and --need >= 1")
    if not 0 <= args.hour <= 24 or not math.isfinite(args.level_db) or not -40 <= args.temperature_c <= 50:
        raise UserError("--hour must be in 0-24, --temperature-c in -40..50 and --level-db finite")


def run(args) -> int:
    import numpy as np
    import shapely

    from fusion.forensics.frame import FRAME_LOCAL, FRAME_WGS84, Plane
    from fusion.forensics.geojson import GeoJSONError, read_polygons
    from fusion.locator.sensors import SensorsError, read_sensors
    from simulator import plan, plan_output
    from simulator.arrays import ROOFTOP_M
    from simulator.propagation import Atmosphere

    _check(args)
    try:
        sensors = read_sensors(args.sensors)
    except SensorsError as exc:
        raise UserError(str(exc)) from None
    removed = [s.strip() for s in (args.remove or "").split(",") if s.strip()]
    unknown = [s for s in removed if s not in sensors.index]
    if unknown:
        raise UserError(f"--remove: no sensor {', '.join(map(repr, unknown))} in {args.sensors}")
    wgs84 = sensors.frame == "wgs84"
    plane = Plane(FRAME_WGS84, sensors.origin[:2]) if wgs84 else Plane(FRAME_LOCAL)
    xyz = sensors.enu_m.copy()
    if wgs84:   # heights above the ground are not in WGS84 altitudes: take every node to be on a roof
        xyz[:, 2] = ROOFTOP_M
    keep = np.array([sid not in removed for sid in sensors.ids])
    try:
        area = (plan_output.default_area(xyz[:, :2]) if not args.area
                else shapely.union_all([a.polygon for a in read_polygons(args.area, plane)]))
    except GeoJSONError as exc:
        raise UserError(str(exc)) from None
    cells = plan_output.grid_cells(area, args.grid_m)
    if not len(cells) or len(cells) > MAX_CELLS:
        raise UserError(f"the grid has {len(cells)} cells; choose --grid-m for 1 to {MAX_CELLS}")
    cond = plan.Conditions(level_db=args.level_db, atmosphere=Atmosphere(temperature_c=args.temperature_c),
                           zone=args.zone, hour=args.hour, need=args.need)
    runs = {"before": plan.coverage(cells, xyz[keep], cond)}
    added = []
    if args.add:
        added = plan.suggest(runs["before"], cells[::CANDIDATE_STRIDE], args.add, cond)
        runs["after"] = plan.coverage(cells, np.vstack([xyz[keep], added]), cond)
    return _write(args, plane, runs, xyz[~keep], added)


def _write(args, plane, runs: dict, removed_xyz, added: list) -> int:
    import numpy as np

    from simulator import plan_output

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = plan_output.write_cells(out, plane, args.grid_m, runs)
    summary = {name: cov.summary() for name, cov in runs.items()}
    summary.update(sensors=len(runs["before"].sensors_xyz), removed=[s for s in (args.remove or "").split(",") if s],
                   grid_m=args.grid_m, need=args.need, zone=args.zone, hour=args.hour, level_db=args.level_db)
    if added:
        names = [f"new-{k + 1}" for k in range(len(added))]
        paths.append(plan_output.write_sensors_csv(out / "suggested.csv", plane, names, added))
        summary["suggested"] = [dict(sensor=n, **plane.position(float(p[0]), float(p[1]))) for n, p in zip(names, added)]
    paths.append(plan_output.write_summary(out / "summary.json", summary))
    title = f"Coverage for a {args.level_db:g} dB shot, {args.zone} at {args.hour:g} h, {args.need} sensors needed"
    fig = plan_output.heat_maps(runs, args.grid_m, np.asarray(removed_xyz).reshape(-1, 3)[:, :2],
                                np.asarray(added).reshape(-1, 3)[:, :2], title)
    fig.savefig(out / "coverage.png", format="png")
    paths.append(out / "coverage.png")
    for name in runs:
        s = summary[name]
        print(f"{name}: P(located) mean {s['mean_p_locate']:.3f}, >= {s['covered_p']} on {s['covered_share']:.1%} of "
              f"{s['cells']} cells, median expected 95% error there {s['median_err95_m']} m")
    print(" ".join(str(p) for p in paths))
    return 0
