"""The console's parts on their own: accounts, review rules, the live broadcast, the config (the map: test_console_map.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from earwitness.cli import UserError
from fusion.cli_fusion import load_config
from fusion.console.accounts import AccountError, Accounts
from fusion.console.reviews import Forbidden, InvalidAction, Reviews
from fusion.console.server import parse_listen
from fusion.locator.sensors import Sensors
from fusion.server.live import Broadcast
from fusion.server.store import Store
from simulator.broker import free_port


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "fusion.db") as s:
        yield s


def test_accounts_hash_passwords_and_check_them(store):
    users = Accounts(store)
    users.add("ann", "reviewer", "correct horse")
    assert users.authenticate("ann", "correct horse") == "reviewer"
    assert users.authenticate("ann", "wrong horse") is None
    assert users.authenticate("nobody", "correct horse") is None
    with store.engine.connect() as conn:
        (stored,) = conn.exec_driver_sql("SELECT password_hash FROM console_users").one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    users.add("ann", "dispatcher", "new password")   # an existing user: new role and password
    assert users.authenticate("ann", "correct horse") is None and users.role("ann") == "dispatcher"
    for name, role, password in (("bob", "boss", "long enough"), ("", "admin", "long enough"), ("bob", "admin", "short")):
        with pytest.raises(AccountError):
            users.add(name, role, password)


def test_review_rules_and_audit_hook(store):
    audited = []
    reviews = Reviews(store, on_action=lambda *entry: audited.append(entry))
    with pytest.raises(Forbidden):
        reviews.review("dan", "dispatcher", "pgh-1", 1, "dismiss", "looks like fireworks")
    with pytest.raises(Forbidden):
        reviews.review("dan", "dispatcher", "pgh-1", 1, "reclassify", "fireworks", "fireworks")
    with pytest.raises(Forbidden):   # a dispatcher records dispositions, reviews are the reviewers'
        reviews.review("dan", "dispatcher", "pgh-1", 1, "confirm", "caller heard shots")
    with pytest.raises(Forbidden):
        reviews.review("eve", "auditor", "pgh-1", 1, "confirm", "reads only")
    with pytest.raises(InvalidAction):
        reviews.review("ann", "reviewer", "pgh-1", 1, "confirm", "   ")   # a reason is required
    with pytest.raises(InvalidAction):
        reviews.review("ann", "reviewer", "pgh-1", 1, "reclassify", "no class given")
    with pytest.raises(InvalidAction):
        reviews.disposition("dan", "dispatcher", "pgh-1", "found a cat", "")
    reviews.review("rob", "reviewer", "pgh-1", 1, "confirm", "caller heard shots")
    reviews.review("ann", "reviewer", "pgh-1", 2, "reclassify", "crackle, no echo", "fireworks")
    reviews.disposition("dan", "dispatcher", "pgh-1", "nothing found", "")
    rows = reviews.of("pgh-1")
    assert [(r["actor"], r["action"], r["value"], r["revision"]) for r in rows] == [
        ("rob", "confirm", None, 1), ("ann", "reclassify", "fireworks", 2), ("dan", "disposition", "nothing found", None)]
    assert reviews.latest()["pgh-1"]["action"] == "reclassify"
    assert [(actor, action, subject) for actor, action, subject, _ in audited] == [
        ("rob", "confirm", "incident/pgh-1"), ("ann", "reclassify", "incident/pgh-1"), ("dan", "disposition", "incident/pgh-1")]
    assert audited[1][3]["reason"] == "crackle, no echo"


def test_broadcast_reaches_every_subscriber_until_it_leaves():
    live, got_a, got_b = Broadcast(), [], []
    leave_a = live.subscribe(got_a.append)
    live.subscribe(got_b.append)
    live.subscribe(lambda item: 1 / 0)   # a broken watcher stops no one
    live.publish({"incident": "x", "revision": 1})
    leave_a()
    live.publish({"incident": "x", "revision": 2})
    assert [i["revision"] for i in got_a] == [1] and [i["revision"] for i in got_b] == [1, 2]
    assert live.subscribers == 2


def test_console_listen_setting(tmp_path):
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080) and parse_listen("[::1]:80") == ("::1", 80)
    (tmp_path / "nodes.toml").write_text("")
    base = 'site = "pgh"\nbroker = "mqtt://127.0.0.1:1883"\nregistry = "nodes.toml"\n'
    config = tmp_path / "fusion.toml"
    config.write_text(base + '[console]\nlisten = "127.0.0.1:8080"\n')
    assert load_config(config).console_listen == "127.0.0.1:8080"
    config.write_text(base)
    assert load_config(config).console_listen is None
    for bad in ('listen = "8080"', 'listen = "host:99999"', 'port = 8080'):
        config.write_text(base + f"[console]\n{bad}\n")
        with pytest.raises(UserError, match=r"\[console\]"):
            load_config(config)


@pytest.mark.integration   # runs the earwitness command
def test_adduser_command(tmp_path):
    db = tmp_path / "fusion.db"
    command = [sys.executable, "-m", "earwitness", "console", "adduser", "ann", "--role", "auditor", "--db", str(db)]
    done = subprocess.run(command, input="a long passphrase\n", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "user ann (auditor)", done.stderr
    with Store(db) as store:
        assert Accounts(store).authenticate("ann", "a long passphrase") == "auditor"
    short = subprocess.run(command, input="short\n", capture_output=True, text=True, timeout=60)
    assert short.returncode == 2 and short.stderr.strip() == "earwitness console: error: password must have at least 8 characters"


class _Registry:
    sensors = Sensors(["a"], [[0.0, 0.0, 0.0]])


def test_logins_and_logouts_go_to_the_audit_hook(store):
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    from fusion.console.app import console_app
    from fusion.console.server import ConsoleServer

    Accounts(store).add("ann", "auditor", "a long passphrase")
    audited = []
    app = console_app(store, _Registry(), Broadcast(), secret=b"k" * 32, on_action=lambda *e: audited.append(e[:3]))
    port = free_port()
    server = ConsoleServer(app, f"127.0.0.1:{port}").start()
    base = f"http://127.0.0.1:{port}"
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def post(path: str, **form) -> int:
        token = re.search(r'name="csrf" value="([^"]+)"', browser.open(base + "/login").read().decode()).group(1)
        try:
            return browser.open(base + path, urllib.parse.urlencode(dict(form, csrf=token)).encode()).status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert post("/login", name="ann", password="wrong one") == 401
        assert post("/login", name="ann", password="a long passphrase") == 200   # the list, after the redirect
        assert post("/logout") == 200
    finally:
        server.stop()
    assert audited == [("ann", "login-refused", "console"), ("ann", "login", "console"), ("ann", "logout", "console")]


def test_console_server_says_when_it_cannot_listen(store):
    import socket

    from fusion.console.app import console_app
    from fusion.console.server import ConsoleServer

    app = console_app(store, _Registry(), Broadcast(), secret=b"k" * 32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(OSError, match=f"cannot listen on {listen}"):
            ConsoleServer(app, listen).start()
