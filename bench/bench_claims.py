"""Shot claims' cost on the write path: incident revisions stored per second by 1, 2 and 3 worker
slots at once on one PostgreSQL store, with claims (:mod:`fusion.server.claims`, as the worker
stores a round) beside the same rounds stored without them (the reference).

Each slot is a process of its own storing ROUNDS rounds as the worker does (its epoch checked,
its tracker checkpoint saved, one transaction): a new incident of SHOTS shots and the final
revision of the one before.  The slots' shots lie far apart, so none yields: this is what the
check and the claim cost, not a border shot.  The claims table holds PREFILL_CLAIMS older claims
first (days of a busy city within CLAIM_KEEP_S).  The ingest throughput (bench_cluster) stores
no incident (noise pulses), so claims do not touch it.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import statistics
import time
import uuid

import sqlalchemy as sa

from earwitness.units import NS_PER_S
from fusion.server.claims import ShotClaims, claimed_shots
from fusion.server.store import Revision, Store

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
ROUNDS = 200
SHOTS = 3
SAME_SHOT_NS, SAME_SHOT_M = 100_000_000, 600.0   # the tracker's pair slack and a city's anchor range
SLOT_SPACING_M = 20_000.0                          # the slots' shots this far apart: none is another's
T0_NS = 1_700_000_000 * NS_PER_S
ROUND_GAP_NS = 10 * NS_PER_S
PREFILL_CLAIMS = 20_000
START_DELAY_S = 3.0   # the slot processes start storing together, once each has imported and connected
REPEATS = 2           # each (slots, claims on/off) measured this often, interleaved; the median printed


def _incident(slot: int, i: int) -> dict:
    t_ns, x_m = T0_NS + i * ROUND_GAP_NS, slot * SLOT_SPACING_M
    shots = [{"t_ns": t_ns + k * NS_PER_S // 2, "x": x_m, "y": 0.0, "err_m": 5.0, "shooter": 0, "sensors": []}
             for k in range(SHOTS)]
    return {"incident": f"b{slot}-{i}", "t_ns": t_ns, "x": x_m, "y": 0.0, "err_m": 5.0, "rounds": SHOTS, "shooters": 1,
            "shots": shots, "sensors": []}


def _slot(schema: str, slot: int, claims_on: bool, start_at: float) -> float:
    """Store ROUNDS rounds as slot ``slot``; returns the time (time.time()) the last was committed."""
    worker = f"bench/{slot}"
    with Store(POSTGRES_URL, schema=schema) as store:
        claims = ShotClaims(store, worker, SAME_SHOT_NS, SAME_SHOT_M, lambda shot: (shot["x"], shot["y"]))
        admit = claims.admit if claims_on else None
        epoch = store.take_slot(worker)
        time.sleep(max(0.0, start_at - time.time()))
        for i in range(ROUNDS):
            revisions = [Revision(_incident(slot, i), "preliminary", [], {}, {})]
            if i:
                revisions.append(Revision(_incident(slot, i - 1), "final", [], {}, {}))
            store.save_round(revisions, worker, {"round": i}, epoch=epoch, admit=admit)
    return time.time()


def _prefill(schema: str) -> None:
    with Store(POSTGRES_URL, schema=schema) as store:
        ShotClaims(store, "bench/setup", SAME_SHOT_NS, SAME_SHOT_M, lambda shot: (0.0, 0.0))   # its tables
        rows = [{"worker": "bench/old", "incident": f"old-{k}", "t_ns": T0_NS - (k + 1) * ROUND_GAP_NS,
                 "x_m": (k % 50) * 100.0, "y_m": 0.0} for k in range(PREFILL_CLAIMS)]
        with store.writer.begin() as conn:
            conn.execute(claimed_shots.insert(), rows)


def _drop(schema: str) -> None:
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def revisions_rate(slots: int, claims_on: bool) -> float:
    """Revisions stored per second by ``slots`` slot processes at once, on a fresh schema."""
    schema = f"b_{uuid.uuid4().hex[:10]}"
    try:
        _prefill(schema)
        start_at = time.time() + START_DELAY_S
        with concurrent.futures.ProcessPoolExecutor(slots, mp_context=multiprocessing.get_context("spawn")) as pool:
            ends = list(pool.map(_slot, [schema] * slots, range(slots), [claims_on] * slots, [start_at] * slots))
        return slots * (2 * ROUNDS - 1) / (max(ends) - start_at)
    finally:
        _drop(schema)


def main(slot_counts=(1, 2, 3)) -> None:
    for slots in slot_counts:
        runs: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(REPEATS):
            for claims_on in (False, True):
                runs[claims_on].append(revisions_rate(slots, claims_on))
        on, off = statistics.median(runs[True]), statistics.median(runs[False])
        print(f"{slots} slot(s) storing rounds at once (PostgreSQL): {on:,.0f} revisions/s with claims; "
              f"reference without claims {off:,.0f} revisions/s ({on / off - 1:+.0%})", flush=True)


if __name__ == "__main__":
    main()
