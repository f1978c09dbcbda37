"""Shot claims' cost on the write path: incident revisions stored per second by 1, 2 and 3 worker
slots at once on one PostgreSQL store, with claims (:mod:`fusion.server.claims`, as the worker
stores a round) beside the same rounds stored without them (the reference).

Each slot is a process of its own storing ROUNDS rounds as the worker does (its epoch checked,
its tracker checkpoint saved, one transaction): a new incident of SHOTS shots and the final
revision of the one before.  The slots' shots lie far apart, so none yields: this is what the
check and the claim cost, not a border shot.  Each slot's shots lie SLOT_SHIFT_NS after the
previous slot's, in other claim time buckets; and, the worst case, at the same instants as
theirs (same buckets, so their rounds take the same advisory locks and are stored one after the
other).  The claims table holds PREFILL_CLAIMS older claims first (days of a busy city within
CLAIM_KEEP_S).  The ingest throughput (bench_cluster) stores
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
SLOT_SHIFT_NS = 3 * NS_PER_S   # well over two claim buckets (SAME_SHOT_NS): distinct shots, other locks
PREFILL_CLAIMS = 20_000
START_DELAY_S = 3.0   # the slot processes start storing together, once each has imported and connected
REPEATS = 2           # each (slots, claims on/off) measured this often, interleaved; the median printed


def _incident(slot: int, i: int, shift_ns: int) -> dict:
    t_ns, x_m = T0_NS + i * ROUND_GAP_NS + slot * shift_ns, slot * SLOT_SPACING_M
    shots = [{"t_ns": t_ns + k * NS_PER_S // 2, "x": x_m, "y": 0.0, "err_m": 5.0, "shooter": 0, "sensors": []}
             for k in range(SHOTS)]
    return {"incident": f"b{slot}-{i}", "t_ns": t_ns, "x": x_m, "y": 0.0, "err_m": 5.0, "rounds": SHOTS, "shooters": 1,
            "shots": shots, "sensors": []}


def _slot(schema: str, slot: int, claims_on: bool, shift_ns: int, start_at: float) -> tuple[float, float, int]:
    """Store ROUNDS rounds as slot ``slot``: (time.time() the last was committed, this process's CPU
    seconds meanwhile, SQL statements sent)."""
    worker = f"bench/{slot}"
    with Store(POSTGRES_URL, schema=schema) as store:
        claims = ShotClaims(store, worker, SAME_SHOT_NS, SAME_SHOT_M, lambda shot: (shot["x"], shot["y"]))
        admit = claims.admit if claims_on else None
        epoch = store.take_slot(worker)
        sent = [0]
        sa.event.listen(store.writer, "before_cursor_execute", lambda *_: sent.__setitem__(0, sent[0] + 1))
        time.sleep(max(0.0, start_at - time.time()))
        cpu_s = time.process_time()
        for i in range(ROUNDS):
            revisions = [Revision(_incident(slot, i, shift_ns), "preliminary", [], {}, {})]
            if i:
                revisions.append(Revision(_incident(slot, i - 1, shift_ns), "final", [], {}, {}))
            store.save_round(revisions, worker, {"round": i}, epoch=epoch, admit=admit)
        return time.time(), time.process_time() - cpu_s, sent[0]


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


def revisions_rate(slots: int, claims_on: bool, shift_ns: int = SLOT_SHIFT_NS) -> tuple[float, float, float]:
    """(revisions stored per second, a round's client CPU ms, a round's SQL statements) of ``slots``
    slot processes at once on a fresh schema, each slot's shots ``shift_ns`` after the previous slot's."""
    schema = f"b_{uuid.uuid4().hex[:10]}"
    try:
        _prefill(schema)
        start_at = time.time() + START_DELAY_S
        with concurrent.futures.ProcessPoolExecutor(slots, mp_context=multiprocessing.get_context("spawn")) as pool:
            got = list(pool.map(_slot, [schema] * slots, range(slots), [claims_on] * slots, [shift_ns] * slots,
                                [start_at] * slots))
        rounds = slots * ROUNDS
        return (slots * (2 * ROUNDS - 1) / (max(end for end, _, _ in got) - start_at),
                1e3 * sum(cpu_s for _, cpu_s, _ in got) / rounds, sum(n for _, _, n in got) / rounds)
    finally:
        _drop(schema)


def main(slot_counts=(1, 2, 3)) -> None:
    for slots in slot_counts:
        kinds = {"off": (False, SLOT_SHIFT_NS), "on": (True, SLOT_SHIFT_NS)}
        if slots > 1:
            kinds["same instants"] = (True, 0)
        runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
        for _ in range(REPEATS):
            for kind, (claims_on, shift_ns) in kinds.items():
                runs[kind].append(revisions_rate(slots, claims_on, shift_ns))
        rate = {kind: statistics.median(r for r, _, _ in got) for kind, got in runs.items()}
        cpu_ms = {kind: statistics.median(c for _, c, _ in got) for kind, got in runs.items()}
        sent = {kind: statistics.median(n for _, _, n in got) for kind, got in runs.items()}
        same_s = rate.get("same instants", 0.0)
        same = (f"; slots' shots at the same instants {same_s:,.0f} ({same_s / rate['off'] - 1:+.0%})"
                if "same instants" in rate else "")
        print(f"{slots} slot(s) storing rounds at once (PostgreSQL), revisions/s: with claims {rate['on']:,.0f} "
              f"({rate['on'] / rate['off'] - 1:+.0%}){same}; reference without claims {rate['off']:,.0f}.  A round: "
              f"{sent['on']:.0f} SQL statements, {cpu_ms['on']:.1f} ms of the worker's CPU with claims; reference "
              f"{sent['off']:.0f}, {cpu_ms['off']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
