"""fusion.server.claims against a real SQLite file and the real PostgreSQL server: two worker slots
that locate one shot (a border shot, each from its own side's pulses) store it under one id."""
from __future__ import annotations

import concurrent.futures
import hashlib
import math
import threading

import nacl.signing
import pytest
import sqlalchemy as sa

from earwitness import topics, wire
from earwitness.units import NS_PER_S
from fusion.server.claims import CLAIM_KEEP_S, ShotClaims, bucket_lock_key, claimed_shots, slot_incidents
from fusion.server.registry import write_registry
from fusion.server.service import FusionConfig
from fusion.server.store import Revision, Store
from fusion.transport import mqtt_service
from fusion_db import database
from simulator.broker import Collector, publish_all, wait_until

SAME_SHOT_NS = 100_000_000   # the tracker's pair slack
SAME_SHOT_M = 500.0          # its anchor range on a city grid
T0_NS = 1_700_000_000_000_000_000
SHOTS = 20                   # shots both slots claim at once in the stress test
HOLD_S = 3.0                 # how long the first claimant's transaction waits for the second to be under way
POLL_S = 0.01
KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
# The border site: two slots' cells meet at x = 0, a column of sensors every SPACING_M on each side.
SITE = "brd"
CELL_M = 2000.0
HALO_M = 100.0                # each slot hears only its own side's sensors
COLUMNS, ROWS, SPACING_M = 3, 5, 250.0
SHOT_XY = (0.0, 750.0)
# Each side's arrivals fit a source this far (and, east, this much later) from the shot: a located
# shot lies a little off as its sensors hear it (diffraction, clocks), so each slot places it on its own side.
SIDE_OFFSET_M, SIDE_OFFSET_NS = 10.0, 20_000_000
TEMPERATURE_C = 10.0
T_UNC_NS = 100_000
WAIT_S = 60.0


def _incident(incident_id: str, t_ns: int, x_m: float, y_m: float = 0.0, shots: int = 1) -> dict:
    """An incident with ``shots`` shots 1 s apart from (t_ns, x_m, y_m)."""
    return {"incident": incident_id, "t_ns": t_ns, "x": x_m, "y": y_m, "err_m": 5.0, "rounds": shots, "shooters": 1,
            "shots": [{"t_ns": t_ns + k * 10**9, "x": x_m, "y": y_m, "err_m": 5.0, "shooter": 0, "sensors": []}
                      for k in range(shots)], "sensors": []}


def _claims(store: Store, worker: str) -> ShotClaims:
    return ShotClaims(store, worker, SAME_SHOT_NS, SAME_SHOT_M, lambda shot: (shot["x"], shot["y"]))


def _save(store: Store, claims: ShotClaims, incident: dict, status: str = "preliminary") -> int | None:
    return store.save_round([Revision(incident, status, [], {}, {})], claims.worker, admit=claims.admit)[0]


@pytest.fixture(params=KINDS)
def stores(request, tmp_path):
    """Two workers' stores on one database (each its own engine: its own connections and transactions)."""
    with database(request.param, tmp_path) as (url, schema), Store(url, schema=schema) as a, \
            Store(url, schema=schema) as b:
        yield a, b


def _waiting_for_claim_lock(store: Store, t_ns: int) -> bool:
    """PostgreSQL: whether some transaction waits for a claim lock of a shot at ``t_ns``."""
    keys = [bucket_lock_key(b) % 2**64 for b in (t_ns // SAME_SHOT_NS, t_ns // SAME_SHOT_NS + 1)]
    query = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 "
                    "AND (classid::bigint::numeric * 4294967296 + objid::bigint) = ANY(CAST(:keys AS numeric[]))")
    with store.engine.connect() as conn:
        return conn.execute(query, {"keys": keys}).scalar() > 0


def test_two_slots_claiming_one_shot_at_once_store_it_once(stores):
    """Slot A stores a new incident and, before its transaction commits, slot B stores its own
    location of the same shot (20 ms and 8 m off, another id): B's check runs only once A's claim
    is visible, so B's incident is not stored and says whose shot it is."""
    a_store, b_store = stores
    a, b = _claims(a_store, "s/0"), _claims(b_store, "s/1")
    a_inside, b_done = threading.Event(), threading.Event()

    def hold(conn, saved):   # A's transaction, its claim made and not committed: B comes now
        a_inside.set()
        deadline = threading.Event()
        timer = threading.Timer(HOLD_S, deadline.set)
        timer.start()
        while not (b_done.is_set() or deadline.is_set()
                   or (not a_store.is_sqlite and _waiting_for_claim_lock(a_store, T0_NS))):
            b_done.wait(POLL_S)
        timer.cancel()

    def b_claims():
        assert a_inside.wait(HOLD_S * 10)
        try:
            return _save(b_store, b, _incident("site-b", T0_NS + 20_000_000, 8.0))
        finally:
            b_done.set()

    a_store.revision_hooks.append(hold)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        later = pool.submit(b_claims)
        first = pool.submit(_save, a_store, a, _incident("site-a", T0_NS, 0.0))
        numbers = (first.result(), later.result())
    assert numbers == (1, None)
    assert [i["incident"] for i in a_store.incidents()] == ["site-a"]
    assert b.yielded == {"site-b": "site-a"}
    # B's later revisions of its incident stay unstored, however its relocations move it.
    assert _save(b_store, b, _incident("site-b", T0_NS + 5 * 10**9, 3000.0), "final") is None
    assert _save(a_store, a, _incident("site-a", T0_NS, 1.0), "final") == 2
    with a_store.engine.connect() as conn:
        rows = {tuple(r) for r in conn.execute(sa.select(slot_incidents.c.worker, slot_incidents.c.incident,
                                                         slot_incidents.c.yielded_to))}
    assert rows == {("s/0", "site-a", None), ("s/1", "site-b", "site-a")}


def test_many_shots_claimed_by_two_slots_at_once_are_each_stored_once(stores):
    """Two slots store their locations of the same 20 shots at once (threads started together, each
    round its own transaction): every shot is stored once, by one slot or the other."""
    a_store, b_store = stores
    start = threading.Barrier(2)

    def claim_all(store, worker, dt_ns, dx_m):
        claims = _claims(store, worker)
        start.wait()
        return [_save(store, claims, _incident(f"{worker}-{k}", T0_NS + k * 10 * 10**9 + dt_ns, dx_m)) for k in range(SHOTS)]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        got = [pool.submit(claim_all, s, w, dt, dx) for s, w, dt, dx in ((a_store, "s/0", 0, 0.0),
                                                                        (b_store, "s/1", 30_000_000, -12.0))]
        a_numbers, b_numbers = (f.result() for f in got)
    assert all((x is None) != (y is None) for x, y in zip(a_numbers, b_numbers)), (a_numbers, b_numbers)
    assert len(a_store.incidents()) == SHOTS


def test_only_the_same_shot_of_another_slot_is_yielded_to(stores):
    """Other shots (farther in time or place), the slot's own incidents and withdrawn ones claim
    nothing of another slot's; an incident of another slot under the same id is its."""
    a_store, b_store = stores
    a, b = _claims(a_store, "s/0"), _claims(b_store, "s/1")
    assert _save(a_store, a, _incident("a1", T0_NS, 0.0, shots=3)) == 1
    assert _save(b_store, b, _incident("b-later", T0_NS + SAME_SHOT_NS + 1, 0.0)) == 1
    assert _save(b_store, b, _incident("b-far", T0_NS, SAME_SHOT_M + 1.0)) == 1
    assert _save(a_store, a, _incident("a-again", T0_NS, 0.0)) == 1   # the slot's own: its tracker decides
    assert _save(b_store, b, _incident("b-third-round", T0_NS + 2 * 10**9 + 1, 0.0, shots=1)) is None
    assert b.yielded == {"b-third-round": "a1"}
    assert _save(b_store, b, _incident("a1", T0_NS + 7 * 10**9, 9000.0)) is None   # a1's id is slot A's
    assert _save(a_store, a, _incident("a-again", T0_NS, 0.0), "withdrawn") == 2   # a withdrawn one claims no shot
    assert _save(a_store, a, _incident("a1", T0_NS, 0.0, shots=3), "withdrawn") == 2
    assert _save(b_store, b, _incident("b-now", T0_NS, 0.0)) == 1
    assert a.opened(["a1", "a-again", "b-now", "nope"]) == {"a1", "a-again"} and b.opened(["b-now"]) == {"b-now"}
    assert a.known(["a1", "b-third-round", "nope"]) == {"a1", "b-third-round"}


def test_a_withdrawal_into_an_incident_that_yielded_names_the_claimant(stores):
    """Slot B published an incident (one round of a burst); B's tracker then finds the burst, whose
    shots slot A had claimed: B's burst yields, and B's round, withdrawn into it, names A's."""
    a_store, b_store = stores
    a, b = _claims(a_store, "s/0"), _claims(b_store, "s/1")
    assert _save(b_store, b, _incident("b-round", T0_NS + 10**9, 2000.0)) == 1   # far from A's shots so far
    assert _save(a_store, a, _incident("a-burst", T0_NS, 0.0, shots=3)) == 1
    burst = _incident("b-burst", T0_NS + 5_000_000, 3.0, shots=3)
    withdrawn = dict(_incident("b-round", T0_NS + 10**9, 2000.0), merged_into="b-burst")
    numbers = b_store.save_round([Revision(withdrawn, "withdrawn", [], {}, {}), Revision(burst, "preliminary", [], {}, {})],
                                 "s/1", admit=b.admit)
    assert numbers == [2, None] and b.yielded == {"b-burst": "a-burst"}
    assert b_store.incident("b-round")["merged_into"] == "a-burst" and b_store.incident("b-burst") is None


def _claimed(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(claimed_shots.c.worker, claimed_shots.c.incident)))


def test_claims_on_shots_long_before_a_rounds_newest_are_pruned(stores):
    """A slot's first round with shots deletes every slot's claims on shots more than CLAIM_KEEP_S
    before its newest (data time), not the younger ones; it prunes again only PRUNE_EVERY_S later,
    not on each write."""
    a_store, b_store = stores
    a = _claims(a_store, "s/0")
    keep_ns = CLAIM_KEEP_S * NS_PER_S
    assert _save(a_store, a, _incident("a-old", T0_NS, 0.0)) == 1
    assert _save(a_store, a, _incident("a-recent", T0_NS + keep_ns // 2, 0.0)) == 1
    b = _claims(b_store, "s/1")
    assert _save(b_store, b, _incident("b-new", T0_NS + keep_ns + 10 * NS_PER_S, 5000.0)) == 1
    assert _claimed(a_store) == [("s/0", "a-recent"), ("s/1", "b-new")]
    # a-old's shot located late by slot B: its claim is gone, so it is opened again (as without
    # claims); a-recent's shot still yields.
    assert _save(b_store, b, _incident("b-late-old", T0_NS + 1, 0.0)) == 1
    assert _save(b_store, b, _incident("b-late-recent", T0_NS + keep_ns // 2 + 1, 0.0)) is None
    assert b.yielded == {"b-late-recent": "a-recent"}
    # Within PRUNE_EVERY_S of its last prune the slot does not prune: b-late-old's old claim stays.
    assert _save(b_store, b, _incident("b-newer", T0_NS + keep_ns + 20 * NS_PER_S, 9000.0)) == 1
    assert ("s/1", "b-late-old") in _claimed(b_store)


def _slot_rows(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(slot_incidents.c.worker, slot_incidents.c.incident)))


def test_slot_incidents_long_before_a_rounds_newest_are_pruned(stores):
    """With the claims, a prune deletes every slot's record of the incidents (stored or yielded)
    whose newest shot is more than CLAIM_KEEP_S before the round's newest (data time), not younger ones."""
    a_store, b_store = stores
    keep_ns = CLAIM_KEEP_S * NS_PER_S
    a, b = _claims(a_store, "s/0"), _claims(b_store, "s/1")
    assert _save(a_store, a, _incident("a-old", T0_NS, 0.0)) == 1
    assert _save(a_store, a, _incident("a-long", T0_NS - NS_PER_S // 2, 3000.0, shots=2)) == 1   # its last shot at T0 + 0.5 s
    assert _save(a_store, a, _incident("a-recent", T0_NS + keep_ns // 2, 0.0)) == 1
    assert _save(b_store, b, _incident("b-old", T0_NS + 1, 0.0)) is None   # yielded to a-old
    assert _slot_rows(a_store) == [("s/0", "a-long"), ("s/0", "a-old"), ("s/0", "a-recent"), ("s/1", "b-old")]
    c = _claims(b_store, "s/2")   # its first round prunes what lies before T0 + 0.25 s
    assert _save(b_store, c, _incident("c-new", T0_NS + keep_ns + NS_PER_S // 4, 5000.0)) == 1
    assert _slot_rows(a_store) == [("s/0", "a-long"), ("s/0", "a-recent"), ("s/2", "c-new")]
    assert a.known(["a-old", "b-old", "a-long"]) == {"a-long"}


def test_slot_incidents_made_before_their_prune_get_its_column(stores):
    """A slot_incidents table without the data time column (an older server's) gets it; its rows
    (no data time known) are kept, new ones pruned."""
    a_store, _ = stores
    with a_store.writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE slot_incidents (worker VARCHAR(64) NOT NULL, incident VARCHAR(64) NOT NULL, "
                             "yielded_to VARCHAR(64), created_ns BIGINT NOT NULL, PRIMARY KEY (worker, incident))"))
        conn.execute(sa.text("INSERT INTO slot_incidents VALUES ('s/0', 'before', NULL, 1)"))
    a = _claims(a_store, "s/0")
    assert _save(a_store, a, _incident("a-old", T0_NS, 0.0)) == 1
    a._prune_due = 0.0   # due now
    assert _save(a_store, a, _incident("a-new", T0_NS + CLAIM_KEEP_S * NS_PER_S + NS_PER_S, 0.0)) == 1
    assert _slot_rows(a_store) == [("s/0", "a-new"), ("s/0", "before")]


def _border_site(tmp_path) -> tuple:
    """Sensors either side of a cell border and one shot on it, as signed pulse messages in arrival order."""
    nodes = {f"{'we'[side > 0]}{i}{j}": (side * (SPACING_M / 2 + i * SPACING_M), SHOT_XY[1] + (j - ROWS // 2) * SPACING_M)
             for side in (-1, 1) for i in range(COLUMNS) for j in range(ROWS)}
    keys = {n: nacl.signing.SigningKey(hashlib.sha256(n.encode()).digest()) for n in nodes}
    registry = write_registry(tmp_path / "nodes.toml", {n: (bytes(keys[n].verify_key).hex(), {"x": x, "y": y, "z": 0.0})
                                                        for n, (x, y) in nodes.items()})
    c_m_s = 20.03 * math.sqrt(TEMPERATURE_C + 273.15)
    arrivals = []
    for name, (x, y) in nodes.items():
        east = x > 0
        source_x = SHOT_XY[0] + (SIDE_OFFSET_M if east else -SIDE_OFFSET_M)
        t_ns = T0_NS + east * SIDE_OFFSET_NS + round(math.hypot(x - source_x, y - SHOT_XY[1]) / c_m_s * NS_PER_S)
        message = wire.PulseMessage(wire.node_id(name), 1, t_ns, T_UNC_NS, "file", {"snr_db": 30.0})
        arrivals.append((t_ns, topics.pulse(SITE, name), wire.encode(message, keys[name])))
    return registry, [(topic, raw) for _, topic, raw in sorted(arrivals)]


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_two_slots_that_both_locate_a_border_shot_alert_it_under_one_id(kind, mosquitto, tmp_path):
    """Two fusion workers with adjacent cells each hear the shot on their border from their own side
    and place it in their own cells (each would publish it); on a real mosquitto one alert id goes
    out, revised to final, and one incident is stored: the other slot yielded."""
    registry, messages = _border_site(tmp_path)
    alerts = Collector(mosquitto.url, topics.incident(SITE)).start()
    with database(kind, tmp_path) as (url, schema):
        workers = [mqtt_service(FusionConfig(site=SITE, broker=mosquitto.url, registry=registry, database=url, schema=schema,
                                             client_id=f"fusion-border-{k}", temperature_c=TEMPERATURE_C, workers=2,
                                             worker_index=k, cell_m=CELL_M, halo_m=HALO_M, request_clips=False)).start()
                   for k in range(2)]
        located: list[dict] = [{}, {}]   # each slot's located incidents, as seen while open

        def both_located() -> bool:
            for seen, w in zip(located, workers):
                seen.update((i["incident"], i) for i in w.tracker.open_incidents())
            return all(located)

        try:
            publish_all(mosquitto.url, messages)
            assert wait_until(both_located, WAIT_S)
            assert wait_until(lambda: all(w.locator_idle for w in workers), WAIT_S)
        finally:
            for w in workers:
                w.stop(finalise=True)
        with Store(url, schema=schema) as store:
            stored = store.incidents()
    assert wait_until(lambda: any(a["status"] == "final" for a in alerts.json(topics.incident(SITE))), WAIT_S)
    alerts.close()
    # Each slot located the shot on its own side of the border (in its own cells), at another time.
    # (each location of it, as relocated; named by the locator from its time to the millisecond)
    assert all(w.partition.owns(i) for w, seen in zip(workers, located) for i in seen.values())
    assert not set(located[0]) & set(located[1])
    got = alerts.json(topics.incident(SITE))
    assert len({a["incident"] for a in got}) == 1, [(a["incident"], a["status"]) for a in got]
    assert got[0]["status"] == "preliminary" and got[-1]["status"] == "final"
    assert [a["revision"] for a in got] == list(range(1, len(got) + 1))
    assert [i["incident"] for i in stored] == [got[0]["incident"]]
    assert sorted(w.yielded for w in workers) == [0, 1]
