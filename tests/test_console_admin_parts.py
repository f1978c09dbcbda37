"""The console's roles, server-side sessions, settings and transparency figures on their own (real
SQLite files and the local PostgreSQL, real openssl certificates, the real earwitness command)."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
import sys
import time

import pytest

from earwitness.cli import UserError
from fusion.cli_fusion import load_config
from fusion.console import roles
from fusion.console.accounts import AccountError, Accounts
from fusion.console.reviews import Reviews
from fusion.console.sessions import Sessions
from fusion.server.audit import AuditLog
from fusion.server.registry import load_registry, write_registry
from fusion.server.store import Store
from fusion_db import database

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
# Long against a loaded machine's query time (a session used every IDLE_S / 2 must live on), short for a test.
IDLE_S = 3.0
COMMAND_TIMEOUT_S = 120


def test_matrix_gives_each_role_what_the_issue_says():
    assert roles.may("dispatcher", roles.DISPOSITION) and roles.may("dispatcher", roles.LIVE)
    assert not any(roles.may("dispatcher", a) for a in roles.REVIEW_ACTIONS)
    assert all(roles.may("reviewer", a) for a in roles.REVIEW_ACTIONS)
    assert roles.may("analyst", roles.DASHBOARD) and not roles.may("analyst", roles.AUDIT)
    assert roles.may("auditor", roles.AUDIT) and not roles.may("auditor", roles.CONFIRM)
    assert [r for r in roles.ROLES if roles.may(r, roles.USERS)] == ["admin"]
    assert roles.MATRIX["admin"] == frozenset(roles.PERMISSIONS)
    assert not roles.may("boss", roles.LIVE) and not roles.may(None, roles.LIVE)


@pytest.mark.slow   # idles the sessions for 9 s
@pytest.mark.parametrize("kind", KINDS)
def test_sessions_end_at_logout_disable_and_idle(kind, tmp_path):
    with database(kind, tmp_path) as (url, schema), Store(url, schema=schema) as store:
        users, sessions = Accounts(store), Sessions(store, idle_s=IDLE_S)
        users.add("ann", "reviewer", "a long passphrase")
        users.add("bob", "dispatcher", "another passphrase")
        a1, a2, b1 = sessions.open("ann"), sessions.open("ann"), sessions.open("bob")
        assert sessions.user(a1) == "ann" and sessions.user(b1) == "bob" and sessions.user("forged") is None
        with store.engine.connect() as conn:   # only the token's hash is stored
            stored = [r[0] for r in conn.exec_driver_sql("SELECT token_sha256 FROM console_sessions")]
        assert a1 not in stored and len(stored) == 3
        sessions.end(a1, "logout")
        assert sessions.user(a1) is None and sessions.user(a2) == "ann"
        users.set_disabled("bob", True)
        assert sessions.end_user("bob", "user disabled") == 1 and sessions.user(b1) is None
        assert users.role("bob") is None and users.authenticate("bob", "another passphrase") is None
        users.set_disabled("bob", False)
        assert users.authenticate("bob", "another passphrase") == "dispatcher" and sessions.user(b1) is None
        # Used within the idle limit it lives on; unused longer, it ends.
        fresh = sessions.open("ann")
        for _ in range(3):
            time.sleep(IDLE_S / 2)
            assert sessions.user(fresh) == "ann"
        time.sleep(IDLE_S * 1.5)
        assert sessions.user(fresh) is None and sessions.user(a2) is None and sessions.open_count("ann") == 0


def test_accounts_roles_and_disable(tmp_path):
    with Store(tmp_path / "fusion.db") as store:
        users = Accounts(store)
        users.add("ann", "reviewer", "a long passphrase")
        users.set_role("ann", "analyst")
        assert users.role("ann") == "analyst"
        with pytest.raises(AccountError, match="role must be one of"):
            users.set_role("ann", "boss")
        with pytest.raises(AccountError, match="no user 'nobody'"):
            users.set_disabled("nobody", True)
        users.set_disabled("ann", True)
        (row,) = users.all()
        assert row["name"] == "ann" and row["disabled_ns"] and "password_hash" not in row


def test_users_table_of_an_older_store_gets_its_column(tmp_path):
    with Store(tmp_path / "fusion.db") as store:
        with store.writer.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE console_users (name VARCHAR(64) PRIMARY KEY, role VARCHAR(16) NOT NULL, "
                                 "password_hash TEXT NOT NULL, created_ns BIGINT NOT NULL)")
            conn.exec_driver_sql("INSERT INTO console_users VALUES ('old', 'admin', 'x', 1)")
        assert Accounts(store).role("old") == "admin"


def _self_signed(folder):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "console.key", "-out",
                    "console.pem", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   cwd=folder, check=True, capture_output=True)
    return folder / "console.pem", folder / "console.key"


def test_console_settings_and_tls_files(tmp_path):
    (tmp_path / "nodes.toml").write_text("")
    base = 'site = "pgh"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n[console]\nlisten = "127.0.0.1:8443"\n'
    config = tmp_path / "fusion.toml"
    cert, key = _self_signed(tmp_path)
    config.write_text(base + 'tls_cert = "console.pem"\ntls_key = "console.key"\nidle_s = 600\nareas = "a.geojson"\n')
    settings = load_config(config).console
    assert (settings.tls_cert, settings.tls_key, settings.idle_s, settings.areas) == (cert, key, 600.0, tmp_path / "a.geojson")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    bad = {'tls_cert = "console.pem"': "tls_cert and tls_key go together",
           'tls_cert = "missing.pem"\ntls_key = "console.key"': "tls_cert: no such file",
           'tls_cert = "garbage.pem"\ntls_key = "console.key"': "not a PEM certificate and its key",
           'tls_cert = "console.pem"\ntls_key = "console.pem"': "not a PEM certificate and its key",
           "idle_s = 0": "idle_s must be a positive", "idle_s = true": "idle_s must be a positive",
           'colour = "red"': "unknown setting"}
    for extra, message in bad.items():
        config.write_text(base + extra + "\n")
        with pytest.raises(UserError, match=message) as exc:
            load_config(config)
        assert "\n" not in str(exc.value)


@pytest.mark.integration   # runs the earwitness command
def test_fusion_command_refuses_a_bad_certificate_in_one_line(tmp_path):
    (tmp_path / "nodes.toml").write_text("")
    (tmp_path / "console.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    (tmp_path / "console.key").write_text("")
    config = tmp_path / "fusion.toml"
    config.write_text('site = "pgh"\nbroker = "mqtt://127.0.0.1:1"\nregistry = "nodes.toml"\n[console]\n'
                      'listen = "127.0.0.1:8443"\ntls_cert = "console.pem"\ntls_key = "console.key"\n')
    done = subprocess.run([sys.executable, "-m", "earwitness", "fusion", "--config", str(config)],
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    print(done.stderr)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1
    assert "tls_cert" in done.stderr and "Traceback" not in done.stderr


# -- transparency figures ------------------------------------------------------------------------
T_JAN, T_FEB, T_MAR = (1767268800 * 10**9, 1769947200 * 10**9, 1772366400 * 10**9)   # 2026-01-01, 02-01, 03-01 12:00 UTC
AREAS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"name": "Hill"},
     "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]}},
    {"type": "Feature", "properties": {"name": "Strip"},
     "geometry": {"type": "Polygon", "coordinates": [[[100, 0], [200, 0], [200, 100], [100, 100], [100, 0]]]}}]}
# id: (x, y, class, confidence, t_ns, status)
INCIDENTS = {"s-1": (50, 50, "gunfire", 0.95, T_JAN, "final"), "s-2": (20, 80, "gunfire", 0.85, T_JAN + 10**12, "final"),
             "s-3": (70, 10, "fireworks", 0.3, T_FEB, "final"), "s-4": (150, 50, "gunfire", 0.9, T_FEB + 10**12, "final"),
             "s-5": (190, 90, "gunfire", 0.65, T_FEB + 2 * 10**12, "revised"), "s-6": (500, 500, "unknown", 0.1, T_MAR, "final"),
             "s-7": (60, 60, "gunfire", 0.99, T_MAR + 10**12, "withdrawn")}
HILL = {"area": "Hill", "alerts": 3, "confirmed": 1, "dismissed": 1, "reclassified": 1, "unreviewed": 0, "casings found": 1,
        "victim": 1, "damage": 0, "nothing found": 1, "not attended": 0, "no disposition": 0, "evidence": 2}
STRIP = {"area": "Strip", "alerts": 2, "confirmed": 1, "dismissed": 0, "reclassified": 0, "unreviewed": 1, "casings found": 0,
         "victim": 0, "damage": 0, "nothing found": 1, "not attended": 0, "no disposition": 1, "evidence": 0}
OUTSIDE = {"area": "(outside every area)", "alerts": 1, "confirmed": 0, "dismissed": 0, "reclassified": 0, "unreviewed": 1,
           "casings found": 0, "victim": 0, "damage": 0, "nothing found": 0, "not attended": 0, "no disposition": 1,
           "evidence": 0}


def _scenario(store) -> None:
    """Known incidents in the real store and known reviews and dispositions through the review module."""
    for iid, (x, y, cls, conf, t_ns, status) in INCIDENTS.items():
        store.save_incident({"incident": iid, "t_ns": t_ns, "x": float(x), "y": float(y), "class": cls, "confidence": conf,
                             "rounds": 1, "shots": []}, status="preliminary")
        if status != "preliminary":
            store.save_incident({"incident": iid, "t_ns": t_ns, "x": float(x), "y": float(y), "class": cls,
                                 "confidence": conf, "rounds": 1, "shots": []}, status=status)
    reviews = Reviews(store)
    reviews.review("rita", "reviewer", "s-1", 1, "confirm", "clear gunfire")
    reviews.disposition("dan", "dispatcher", "s-1", "casings found", "3 casings")
    reviews.review("rita", "reviewer", "s-2", 1, "confirm", "looked like gunfire")
    reviews.review("rob", "reviewer", "s-2", 2, "dismiss", "a truck backfiring")        # the latest review counts
    reviews.disposition("dan", "dispatcher", "s-2", "nothing found", "")
    reviews.review("rita", "reviewer", "s-3", 2, "reclassify", "not fireworks", "gunfire")
    reviews.disposition("dan", "dispatcher", "s-3", "victim", "")
    reviews.disposition("dan", "dispatcher", "s-4", "damage", "a window")
    reviews.disposition("dan", "dispatcher", "s-4", "nothing found", "the window was old")   # the latest counts
    reviews.review("admin", "admin", "s-5", 1, "confirm", "heard by 6 sensors")
    reviews.review("rita", "reviewer", "s-7", 1, "confirm", "withdrawn later: not counted")


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson's score interval written out (z from the standard library's normal distribution)."""
    z = statistics.NormalDist().inv_cdf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def _stats(*args) -> str:
    done = subprocess.run([sys.executable, "-m", "earwitness", "stats", *map(str, args)], capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.integration   # runs the earwitness command
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_stats_counts_a_scenario_with_known_outcomes(kind, tmp_path):
    areas = tmp_path / "areas.geojson"
    areas.write_text(json.dumps(AREAS))
    with database(kind, tmp_path) as (url, schema):
        with Store(url, schema=schema) as store:
            _scenario(store)
        db = ["--db", url] + (["--schema", schema] if schema else [])
        rows = list(csv.DictReader(io.StringIO(_stats(*db, "--areas", areas, "--by", "area", "--format", "csv"))))
        assert [{k: r[k] for k in HILL} for r in rows] == [
            {k: str(v) for k, v in expected.items()} for expected in (OUTSIDE, HILL, STRIP)]
        doc = json.loads(_stats(*db, "--areas", areas, "--by", "area", "--format", "json"))
        assert doc["alerts"] == 6 and [{k: r[k] for k in HILL} for r in doc["rows"]] == [OUTSIDE, HILL, STRIP]
        for row in doc["rows"]:
            for share in ("confirmed", "evidence"):
                lo, hi = wilson(row[share], row["alerts"])
                assert row[f"{share}_share"] == pytest.approx(row[share] / row["alerts"], abs=1e-4)
                assert row[f"{share}_ci_low"] == pytest.approx(lo, abs=1e-4)
                assert row[f"{share}_ci_high"] == pytest.approx(hi, abs=1e-4)
        assert doc["rows"][1]["evidence_ci_low"] == pytest.approx(0.2077, abs=1e-4)   # 2 of 3: Wilson (0.2077, 0.9385)
        by_two = json.loads(_stats(*db, "--by", "month,class", "--format", "json"))["rows"]
        assert [(r["month"], r["class"], r["alerts"], r["confirmed"], r["evidence"]) for r in by_two] == [
            ("2026-01", "gunfire", 2, 1, 1), ("2026-02", "fireworks", 1, 0, 1), ("2026-02", "gunfire", 2, 1, 0),
            ("2026-03", "unknown", 1, 0, 0)]
        by_conf = json.loads(_stats(*db, "--by", "confidence", "--format", "json"))["rows"]
        assert [(r["confidence"], r["alerts"]) for r in by_conf] == [("0.0-0.2", 1), ("0.2-0.4", 1), ("0.6-0.8", 1),
                                                                      ("0.8-1.0", 3)]
        total = _stats(*db)   # a table: one row of everything
        assert total.splitlines()[1].split()[:5] == ["6", "2", "1", "1", "2"]


@pytest.mark.integration   # runs the earwitness command
def test_stats_reads_a_fusion_toml_and_refuses_bad_input_in_one_line(tmp_path):
    with Store(tmp_path / "fusion.db") as store:
        _scenario(store)
    (tmp_path / "areas.geojson").write_text(json.dumps(AREAS))
    (tmp_path / "nodes.toml").write_text("")
    config = tmp_path / "fusion.toml"
    config.write_text('site = "s"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n[console]\n'
                      'listen = "127.0.0.1:8080"\nareas = "areas.geojson"\n')
    rows = list(csv.DictReader(io.StringIO(_stats(config, "--by", "area", "--format", "csv"))))
    assert [(r["area"], r["alerts"]) for r in rows] == [("(outside every area)", "1"), ("Hill", "3"), ("Strip", "2")]
    (tmp_path / "bad.geojson").write_text("{not json")
    for args, message in (([tmp_path / "fusion.db", "--by", "street"], "--by takes"),
                          ([tmp_path / "fusion.db", "--areas", tmp_path / "bad.geojson"], "not GeoJSON"),
                          ([tmp_path / "none.db"], "no database file")):
        done = subprocess.run([sys.executable, "-m", "earwitness", "stats", *map(str, args)], capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode != 0 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.integration   # runs the earwitness command
def test_console_command_manages_users_and_audits_it(tmp_path):
    from earwitness import keys
    from fusion.cli_audit import DEFAULT_SIGNING_KEY

    db = tmp_path / "fusion.db"
    key = tmp_path / DEFAULT_SIGNING_KEY
    keys.generate(key)

    def console(*args, password=""):
        done = subprocess.run([sys.executable, "-m", "earwitness", "console", *args, "--db", str(db), *(
            ["--signing-key", str(key)] if args[0] != "users" else [])], input=password + "\n", capture_output=True,
            text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert console("adduser", "ann", "--role", "reviewer", password="a long passphrase").strip() == "user ann (reviewer)"
    with Store(db) as store:
        token = Sessions(store).open("ann")
    console("role", "ann", "--role", "auditor")
    console("disable", "ann")
    assert console("users").split() == ["ann", "auditor", "disabled"]
    with Store(db) as store:
        assert Sessions(store).user(token) is None and Accounts(store).authenticate("ann", "a long passphrase") is None
        entries = [(e["action"], e["subject"], e["body"]) for e in AuditLog(store).entries()]
        assert AuditLog(store).verify().problem is None
    assert entries == [("user-add", "user/ann", {"role": "reviewer"}), ("user-role", "user/ann", {"role": "auditor"}),
                       ("user-disable", "user/ann", {"sessions_ended": 1})]


def test_every_route_names_its_permission(tmp_path):
    from starlette.routing import Route

    from fusion.console.app import console_app

    nodes = {"s1": ("ab" * 32, {"x": 0.0, "y": 0.0, "z": 0.0}), "s2": ("cd" * 32, {"x": 100.0, "y": 0.0, "z": 0.0})}
    registry = load_registry(write_registry(tmp_path / "nodes.toml", nodes))
    with Store(tmp_path / "fusion.db") as store:
        app = console_app(store, registry, None, secret=b"k" * 32)
    needed = {(r.path, tuple(sorted(r.methods))): getattr(r.endpoint, "permission", "unguarded")
              for r in app.routes if isinstance(r, Route)}
    open_to_all = {("/login", ("GET", "HEAD")): "unguarded", ("/login", ("POST",)): "unguarded"}
    assert {k: v for k, v in needed.items() if v == "unguarded"} == open_to_all
    assert needed[("/logout", ("POST",))] is None   # any signed-in user
    assert needed[("/audit", ("GET", "HEAD"))] == roles.AUDIT and needed[("/dashboard", ("GET", "HEAD"))] == roles.DASHBOARD
    assert all(v == roles.USERS for (path, _), v in needed.items() if path.startswith("/users"))
    assert needed[("/incident/{incident}/disposition", ("POST",))] == roles.DISPOSITION
    assert set(needed.values()) - {"unguarded", None} <= set(roles.PERMISSIONS)
