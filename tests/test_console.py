"""The operator console end to end in a real headless Chromium (Debian's, driven by Playwright).

A real mosquitto, the real `earwitness fusion` process serving the console ([console] listen),
users added with `earwitness console adduser`, and stand-in nodes publishing every pulse of a
real Pittsburgh test (tests/fusion_site.py).  The registry also lists a node whose id holds
markup: the console must show it as text.
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from fusion.server.audit import AuditLog
from fusion.server.registry import write_registry
from fusion.server.store import Store
from fusion_site import build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, Mosquitto, free_port, publish_all, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
SITE = "pgh"
INCIDENT_TOPIC = f"ew/v1/{SITE}/incident"
MARKUP_NODE = "<script>alert(1)"
MARKUP_OFFSET_M = 300.0
# The bound: an incident is on the operator's screen within 2 s of its alert.
ALERT_TO_SCREEN_S = 2.0
WAIT_S = 60.0
WAIT_MS = int(WAIT_S * 1000)
USERS = {"ann": ("reviewer", "ann's long passphrase"), "dan": ("dispatcher", "dan's long passphrase")}


def _adduser(db: pathlib.Path, name: str, role: str, password: str) -> None:
    done = subprocess.run([sys.executable, "-m", "earwitness", "console", "adduser", name, "--role", role, "--db", str(db)],
                          input=password + "\n", capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr


class ConsoleSite:
    """The running site: broker, fusion process with its console, the stand-in nodes' messages."""

    def __init__(self, site, broker: Mosquitto, base_url: str, db: pathlib.Path, shots_dir: pathlib.Path):
        self.site, self.broker, self.base_url, self.db, self.shots_dir = site, broker, base_url, db, shots_dir
        self.alerts = Collector(broker.url, INCIDENT_TOPIC).start()
        self.published = threading.Event()

    def publish(self) -> None:
        """The nodes' pulses, once (in the background: the caller watches the screen meanwhile)."""
        if not self.published.is_set():
            self.published.set()
            items = [(self.site.topic(SITE, node), raw) for node, raw in self.site.messages]
            threading.Thread(target=publish_all, args=(self.broker.url, items), daemon=True).start()

    def incident_id(self) -> str:
        """The incident the pulses made (published if not yet), once its first alert is out."""
        self.publish()
        assert wait_until(lambda: self.alerts.json(INCIDENT_TOPIC), WAIT_S)
        return self.alerts.json(INCIDENT_TOPIC)[0]["incident"]


def markup_site(test: pathlib.Path, folder: pathlib.Path, markup_node: str):
    """A Pittsburgh test as a site whose registry also lists a node ``markup_node`` (an id holding markup)."""
    site = build_site(test, folder)
    nodes = {n: (bytes(k.verify_key).hex(), dict(zip("xyz", site.positions[n]))) for n, k in site.keys.items()}
    x0, y0, z0 = site.positions[sorted(site.positions)[0]]
    nodes[markup_node] = ("ab" * 32, {"x": x0 + MARKUP_OFFSET_M, "y": y0 + MARKUP_OFFSET_M, "z": z0})
    write_registry(site.registry_path, nodes)
    return site


@pytest.fixture(scope="module")
def console_site(pittsburgh, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    site = markup_site(pittsburgh[0], tmp / "site", MARKUP_NODE)
    db = tmp / "fusion.db"
    for name, (role, password) in USERS.items():
        _adduser(db, name, role, password)
    broker = Mosquitto(tmp / "mosquitto", persistence=True).start()
    port = free_port()
    config = write_fusion_config(tmp / "fusion.toml", SITE, broker.url, site.registry_path, "fusion-console",
                                 site.temperature_c, extra=f'[console]\nlisten = "127.0.0.1:{port}"\n')
    running = ConsoleSite(site, broker, f"http://127.0.0.1:{port}", db, tmp_path_factory.mktemp("screenshots"))
    try:
        with fusion_console(config, tmp / "fusion.log"):
            yield running
    finally:
        running.alerts.close()
        broker.stop()


@contextlib.contextmanager
def fusion_console(config: pathlib.Path, log: pathlib.Path):
    """The real fusion process on ``config``, once its console serves; stopped after (and it must exit 0)."""
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: "console on" in log.read_text(), WAIT_S), log.read_text()
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=WAIT_S)
    assert code == 0, log.read_text()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium; .ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _login(browser, base_url: str, name: str):
    """A new browser context signed in as ``name``; returns its page (on the live list)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(base_url + "/")
    assert page.url == base_url + "/login"
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", USERS[name][1])
    page.click("#login button[type=submit]")
    page.wait_for_url(base_url + "/")
    return page


def test_page_without_session_goes_to_login(console_site, browser):
    context = browser.new_context()
    page = context.new_page()
    for path in ("/", "/incident/anything", "/live"):
        page.goto(console_site.base_url + path)
        assert page.url == console_site.base_url + "/login", path
        assert page.locator("#login").is_visible()
    page.fill("input[name=name]", "ann")
    page.fill("input[name=password]", "not her password")
    page.click("#login button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong name or password."
    context.close()


def test_reviewer_sees_incident_live_confirms_and_records_disposition(console_site, browser):
    page = _login(browser, console_site.base_url, "ann")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    assert page.locator("tr.incident").count() == 0
    console_site.publish()
    # No reload: the row comes through the server-sent events.
    row = page.wait_for_selector("tr.incident", timeout=WAIT_MS)
    on_screen_s = time.monotonic()
    first_alert = console_site.alerts.received(INCIDENT_TOPIC)[0]
    incident = json.loads(first_alert.payload)["incident"]
    delay_s = on_screen_s - first_alert.at_s
    print(f"incident {incident} on screen {delay_s:.3f} s after its first alert")
    assert delay_s <= ALERT_TO_SCREEN_S
    assert row.get_attribute("data-incident") == incident
    page.wait_for_selector("svg.map ellipse.ellipse")
    page.screenshot(path=str(console_site.shots_dir / "1-live-list.png"), full_page=True)
    # Later revisions follow on the same page: the incident goes final when its window closes.
    page.wait_for_selector(f"tr.incident[data-incident='{incident}'] td.status-final", timeout=WAIT_MS)
    final = [json.loads(m.payload) for m in console_site.alerts.received(INCIDENT_TOPIC)][-1]
    assert final["status"] == "final"
    assert page.locator(f"tr.incident[data-incident='{incident}'] td.status-final").inner_text() == f"final r{final['revision']}"

    page.click(f"tr.incident[data-incident='{incident}'] a")
    page.wait_for_selector("#shots tr.shot-row")
    assert "(95%)" in page.locator("#shots").inner_text()
    assert page.locator("#revisions tbody tr").count() >= 1
    reviewed = _revision(page)
    page.select_option("#review select[name=action]", "confirm")
    page.fill("#review textarea[name=reason]", "Impulses on many sensors, gunfire <b>confirmed</b>")
    page.click("#review button[type=submit]")
    page.select_option("#disposition select[name=disposition]", "casings found")
    page.fill("#disposition textarea[name=note]", "6 casings")
    page.click("#disposition button[type=submit]")
    rows = page.locator("#actions tr.action-row")
    assert rows.count() == 2
    assert rows.nth(0).inner_text().split("\t")[1:] == [
        "ann (reviewer)", "confirm", "", str(reviewed),
        "Impulses on many sensors, gunfire <b>confirmed</b>"]
    assert rows.nth(1).inner_text().split("\t")[1:4] == ["ann (reviewer)", "disposition", "casings found"]
    page.screenshot(path=str(console_site.shots_dir / "2-incident-reviewed.png"), full_page=True)
    page.goto(console_site.base_url + "/")
    assert "confirm by ann" in page.locator(f"tr.incident[data-incident='{incident}']").inner_text()
    assert dialogs == []
    # The reviewer's actions are entries of the server's hash-chained audit log, and it verifies.
    verify = subprocess.run([sys.executable, "-m", "earwitness", "audit", "verify", "--db", str(console_site.db)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    log = AuditLog(Store(str(console_site.db)))
    actions = [(e["actor"], e["action"]) for e in log.entries(subject=f"incident/{incident}")]
    assert ("ann", "confirm") in actions and ("ann", "disposition") in actions, actions
    print(f"screenshots in {console_site.shots_dir}")
    page.context.close()


def _revision(page) -> int:
    """The revision the incident page offers for review (its latest when loaded)."""
    return int(page.locator("#review h3").inner_text().rsplit(" ", 1)[1])


def test_dispatcher_cannot_dismiss(console_site, browser):
    incident = console_site.incident_id()
    page = _login(browser, console_site.base_url, "dan")
    page.goto(f"{console_site.base_url}/incident/{incident}")
    # No review form at all (a dispatcher may not confirm, dismiss or reclassify); the disposition form is there.
    assert page.locator("#review").count() == 0 and page.locator("#review button").count() == 0
    assert page.locator("#disposition button[type=submit]").is_visible()
    token = page.locator("#disposition input[name=csrf]").input_value()
    before = page.locator("#actions tr.action-row").count()
    for action in ("dismiss", "reclassify", "confirm"):
        response = page.request.post(f"{console_site.base_url}/incident/{incident}/review", max_redirects=0,
                                     form={"csrf": token, "action": action, "reason": "not a gunshot", "class": "fireworks",
                                           "revision": "1"})
        assert response.status == 403, action
    page.reload()
    assert page.locator("#actions tr.action-row").count() == before
    # Each forged attempt is an audit entry naming the dispatcher.
    refused = [e["body"]["wanted"] for e in AuditLog(Store(str(console_site.db))).entries(action="refused")
               if e["actor"] == "dan" and e["subject"] == f"/incident/{incident}/review"]
    assert refused == ["dismiss", "reclassify", "confirm"], refused
    page.screenshot(path=str(console_site.shots_dir / "3-dispatcher.png"), full_page=True)
    page.context.close()


def test_post_without_csrf_token_is_refused(console_site, browser):
    incident = console_site.incident_id()
    page = _login(browser, console_site.base_url, "ann")
    page.goto(f"{console_site.base_url}/incident/{incident}")
    before = page.locator("#actions tr.action-row").count()
    url = f"{console_site.base_url}/incident/{incident}/review"
    for form in ({"action": "dismiss", "reason": "forged", "revision": "1"},
                 {"action": "dismiss", "reason": "forged", "revision": "1", "csrf": "guess"}):
        response = page.request.post(url, form=form, max_redirects=0)
        assert response.status == 403 and "CSRF" in response.text()
    login = page.request.post(console_site.base_url + "/login", form={"name": "ann", "password": USERS["ann"][1]},
                              max_redirects=0)
    assert login.status == 403
    page.reload()
    assert page.locator("#actions tr.action-row").count() == before
    # The same request with the session's token goes through: the token was what was missing.
    token = page.locator("#review input[name=csrf]").input_value()
    response = page.request.post(url, form={"action": "dismiss", "reason": "with token", "revision": "1", "csrf": token},
                                 max_redirects=0)
    assert response.status == 303
    page.reload()
    assert page.locator("#actions tr.action-row").count() == before + 1
    page.context.close()


def test_markup_node_id_is_shown_as_text(console_site, browser):
    page = _login(browser, console_site.base_url, "ann")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    label = page.locator("svg.map text", has_text=MARKUP_NODE)
    assert label.count() == 1 and label.text_content() == MARKUP_NODE
    assert page.locator("script").count() == 1   # the console's own; none from the node id
    assert page.locator("#incidents").is_visible()   # the rest of the page was not swallowed by a script
    page.screenshot(path=str(console_site.shots_dir / "4-markup-node.png"), full_page=True)
    assert dialogs == []
    page.context.close()
