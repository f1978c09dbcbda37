"""The console's roles, sessions, TLS, audit page and transparency dashboard in a real headless Chromium.

As tests/test_console.py: a real mosquitto, the real `earwitness fusion` process serving the
console, users added with `earwitness console adduser`, stand-in nodes publishing every pulse of
a real Pittsburgh test.  Here the console is served over HTTPS with a self-signed certificate
made by openssl, the site's name holds markup (so every incident id does) and so does a node id:
the console must show them as text.  Screenshots go to a pytest temporary folder under /tmp.
"""
from __future__ import annotations

import http.client
import json
import pathlib
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import test_console
from fusion.console import roles
from fusion.console.app import KEEPALIVE_S
from fusion.server.audit import AuditLog
from fusion.server.store import Store
from fusion_site import write_fusion_config
from simulator.broker import Collector, Mosquitto, free_port, publish_all, wait_until
from test_console import _adduser, fusion_console, markup_site
from test_console_admin_parts import _self_signed

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]
browser = test_console.browser   # the shared Chromium fixture (Debian's, through Playwright)

SITE = "<script>alert(2)"            # a site name holding markup: every incident id holds it too
INCIDENT_TOPIC = f"ew/v1/{SITE}/incident"
MARKUP_NODE = "<img src=x onerror=alert(3)>"
AREA_HALF_M = 1000.0                 # the "Range" area: this far round the firing position
WAIT_S = 60.0
USERS = {"ada": ("admin", "ada's long passphrase"), "aud": ("auditor", "aud's long passphrase"),
         "ana": ("analyst", "ana's long passphrase"), "dan": ("dispatcher", "dan's long passphrase"),
         "rev": ("reviewer", "rev's long passphrase")}
# Each page and who gets it (200) or is refused (403): roles.MATRIX, written out again here.
PAGES = {"/": roles.LIVE, "/live": roles.LIVE, "/dashboard": roles.DASHBOARD, "/audit": roles.AUDIT, "/users": roles.USERS}
EXPECTED = {"admin": {"/", "/live", "/dashboard", "/audit", "/users", "incident"},
            "auditor": {"/", "/live", "/audit", "incident"}, "analyst": {"/", "/live", "/dashboard", "incident"},
            "dispatcher": {"/", "/live", "incident"}, "reviewer": {"/", "/live", "incident"}}


class AdminSite:
    def __init__(self, site, broker, base_url, db, cert, shots_dir):
        self.site, self.broker, self.base_url, self.db, self.cert, self.shots_dir = site, broker, base_url, db, cert, shots_dir
        self.alerts = Collector(broker.url, INCIDENT_TOPIC).start()
        self.config: pathlib.Path | None = None   # its fusion.toml
        self.published = threading.Event()

    def incident_id(self) -> str:
        """The incident the pulses made (published once), after its first alert."""
        if not self.published.is_set():
            self.published.set()
            items = [(self.site.topic(SITE, node), raw) for node, raw in self.site.messages]
            publish_all(self.broker.url, items)
        assert wait_until(lambda: self.alerts.json(INCIDENT_TOPIC), WAIT_S)
        return self.alerts.json(INCIDENT_TOPIC)[0]["incident"]

    def audit(self) -> list[dict]:
        with Store(str(self.db)) as store:
            return AuditLog(store).entries()


@pytest.fixture(scope="module")
def admin_site(pittsburgh, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-admin")
    site = markup_site(pittsburgh[0], tmp / "site", MARKUP_NODE)
    sx, sy, _ = site.survey_xyz
    ring = [[sx - AREA_HALF_M, sy - AREA_HALF_M], [sx + AREA_HALF_M, sy - AREA_HALF_M], [sx + AREA_HALF_M, sy + AREA_HALF_M],
            [sx - AREA_HALF_M, sy + AREA_HALF_M], [sx - AREA_HALF_M, sy - AREA_HALF_M]]
    far = [[x + 10 * AREA_HALF_M, y] for x, y in ring]
    (tmp / "areas.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [r]}}
        for name, r in (("Range", ring), ("Elsewhere", far))]}))
    cert, key = _self_signed(tmp / "tls")
    db = tmp / "fusion.db"
    for name, (role, password) in USERS.items():
        _adduser(db, name, role, password)
    broker = Mosquitto(tmp / "mosquitto", persistence=True).start()
    port = free_port()
    console = (f'[console]\nlisten = "127.0.0.1:{port}"\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
               f'areas = "{tmp / "areas.geojson"}"\n')
    config = write_fusion_config(tmp / "fusion.toml", SITE, broker.url, site.registry_path, "fusion-console-admin",
                                 site.temperature_c, extra=console)
    running = AdminSite(site, broker, f"https://127.0.0.1:{port}", db, cert, tmp_path_factory.mktemp("screenshots"))
    running.config = config
    try:
        with fusion_console(config, tmp / "fusion.log"):
            assert "console on https://127.0.0.1" in (tmp / "fusion.log").read_text()
            yield running
    finally:
        running.alerts.close()
        broker.stop()
        print(f"screenshots in {running.shots_dir}")


def _context(browser, **options):
    return browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900}, **options)


def _login(browser, base_url: str, name: str, password: str | None = None):
    """A new context signed in as ``name``; its page (on the live list)."""
    page = _context(browser).new_page()
    page.goto(base_url + "/")
    assert page.url == base_url + "/login"
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password or USERS[name][1])
    page.click("#login button[type=submit]")
    page.wait_for_url(base_url + "/")
    return page


def _watch_dialogs(page) -> list[str]:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return dialogs


def test_console_is_https_only_with_secure_cookies(admin_site, browser):
    # A real HTTPS request from Python, trusting the self-signed certificate: the login page.
    context = ssl.create_default_context(cafile=str(admin_site.cert))
    with urllib.request.urlopen(admin_site.base_url + "/login", context=context, timeout=WAIT_S) as answer:
        assert answer.status == 200 and b'id="login"' in answer.read()
        cookie_header = answer.headers["set-cookie"].lower()
        assert "; secure" in cookie_header and "; httponly" in cookie_header
    # Plain HTTP on the same port gets no page.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(admin_site.base_url.replace("https://", "http://") + "/login", timeout=WAIT_S).read()
    page = _login(browser, admin_site.base_url, "rev")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "ew_console"]
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.context.close()


def test_every_role_gets_only_its_pages(admin_site, browser):
    incident = admin_site.incident_id()
    for name, (role, _) in USERS.items():
        page = _login(browser, admin_site.base_url, name)
        links = {a.get_attribute("href") for a in page.locator("#nav a").all()}
        # every role sees incidents, so the 911 calls and unreported-gunfire pages too
        assert links == {"/calls", "/unreported"} | {p for p in ("/dashboard", "/audit", "/users") if p in EXPECTED[role]}, role
        for path in [*PAGES, f"/incident/{incident}"]:
            response = page.request.get(admin_site.base_url + path, max_redirects=0)
            allowed = (path if path in PAGES else "incident") in EXPECTED[role]
            assert response.status == (200 if allowed else 403), (role, path, response.status)
        page.context.close()
    refused = [(e["actor"], e["subject"]) for e in admin_site.audit() if e["action"] == "refused"]
    assert ("dan", "/users") in refused and ("ana", "/audit") in refused and ("aud", "/dashboard") in refused


def test_auditor_sees_the_audit_log_read_only(admin_site, browser):
    incident = admin_site.incident_id()
    page = _login(browser, admin_site.base_url, "aud")
    page.goto(admin_site.base_url + "/audit")
    verdict = page.locator("#audit-verdict").inner_text()
    assert verdict.startswith("Chain verified:"), verdict
    entries = admin_site.audit()
    assert f"{len(entries)} entries" in verdict or f"{len(entries) - 1} entries" in verdict   # maybe one more since
    rows = page.locator("#audit-entries tr.audit-row")
    assert rows.count() >= len(entries) - 1
    shown = {(r.locator("td.actor").inner_text(), r.locator("td.action").inner_text()) for r in rows.all()}
    assert ("aud", "login") in shown and ("fusion", "revision") in shown
    # The incident's id (holding markup) is shown as text in the subject column.
    assert page.locator("#audit-entries td", has_text=incident).count() >= 1
    assert page.locator("main form").count() == 0 and page.locator("script").count() == 1
    page.screenshot(path=str(admin_site.shots_dir / "a1-audit.png"), full_page=True)
    page.context.close()


def test_admin_manages_users_and_a_disabled_user_is_signed_out_at_once(admin_site, browser):
    admin = _login(browser, admin_site.base_url, "ada")
    admin.goto(admin_site.base_url + "/users")
    admin.fill("#add-user input[name=name]", "newbie")
    admin.select_option("#add-user select[name=role]", "dispatcher")
    admin.fill("#add-user input[name=password]", "newbie's passphrase")
    admin.click("#add-user button[type=submit]")
    row = admin.locator("tr.user-row[data-user=newbie]")
    assert row.locator("td").nth(1).inner_text() == "dispatcher"
    newbie = _login(browser, admin_site.base_url, "newbie", "newbie's passphrase")
    assert newbie.request.get(admin_site.base_url + "/dashboard", max_redirects=0).status == 403
    row.locator("form.role select").select_option("analyst")
    row.locator("form.role button").click()
    # The role applies at the user's next request, without logging in again.
    assert newbie.request.get(admin_site.base_url + "/dashboard", max_redirects=0).status == 200
    admin.locator("tr.user-row[data-user=newbie] form.disable button").click()
    assert "disabled" in admin.locator("tr.user-row[data-user=newbie]").inner_text()
    admin.screenshot(path=str(admin_site.shots_dir / "a2-users.png"), full_page=True)
    newbie.goto(admin_site.base_url + "/")
    assert newbie.url == admin_site.base_url + "/login"
    # An admin's form without the CSRF token changes nothing.
    forged = admin.request.post(admin_site.base_url + "/users/add", max_redirects=0,
                                form={"name": "mallory", "role": "admin", "password": "mallory's passphrase"})
    assert forged.status == 403 and "CSRF" in forged.text()
    admin.reload()
    assert admin.locator("tr.user-row[data-user=mallory]").count() == 0
    changes = [(e["actor"], e["action"], e["subject"], e["body"]) for e in admin_site.audit() if e["subject"] == "user/newbie"]
    assert changes == [("ada", "user-add", "user/newbie", {"role": "dispatcher"}),
                       ("ada", "user-role", "user/newbie", {"role": "analyst"}), ("ada", "user-disable", "user/newbie", {})]
    newbie.context.close()
    admin.context.close()


def test_logout_ends_the_session_on_the_server(admin_site, browser, tmp_path):
    page = _login(browser, admin_site.base_url, "dan")
    saved = tmp_path / "state.json"
    page.context.storage_state(path=str(saved))
    page.click("header button[type=submit]")   # log out
    page.wait_for_url(admin_site.base_url + "/login")
    page.context.close()
    # The cookie from before the logout is still validly signed, but its session is over.
    replay = _context(browser, storage_state=str(saved)).new_page()
    replay.goto(admin_site.base_url + "/")
    assert replay.url == admin_site.base_url + "/login"
    replay.context.close()
    actions = [(e["actor"], e["action"]) for e in admin_site.audit()]
    assert ("dan", "logout") in actions


def test_open_event_stream_ends_with_its_session(admin_site, browser):
    page = _login(browser, admin_site.base_url, "dan")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "ew_console"]
    host, port = admin_site.base_url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), timeout=WAIT_S,
                                       context=ssl.create_default_context(cafile=str(admin_site.cert)))
    conn.request("GET", "/events", headers={"Cookie": f"ew_console={cookie['value']}"})
    stream = conn.getresponse()
    assert stream.status == 200 and stream.readline() == b": connected\n"
    page.click("header button[type=submit]")   # log out in the browser
    page.wait_for_url(admin_site.base_url + "/login")
    t0 = time.monotonic()
    rest = stream.read()   # the server ends the stream at its next event or keepalive
    print(f"event stream ended {time.monotonic() - t0:.1f} s after the logout; it sent {rest!r} meanwhile")
    assert time.monotonic() - t0 < KEEPALIVE_S + WAIT_S / 4 and b"revision" not in rest
    conn.close()
    page.context.close()


def test_markup_in_site_and_node_names_is_shown_as_text(admin_site, browser):
    incident = admin_site.incident_id()
    assert incident.startswith(SITE)
    page = _login(browser, admin_site.base_url, "rev")
    dialogs = _watch_dialogs(page)
    row = page.wait_for_selector("tr.incident", timeout=int(WAIT_S * 1000))
    assert row.get_attribute("data-incident") == incident
    assert page.locator("tr.incident a").first.inner_text() == incident
    page.wait_for_selector("#map .ew-label")
    label = page.locator("#map .ew-label", has_text=MARKUP_NODE)
    assert label.count() == 1 and label.text_content() == MARKUP_NODE
    page.screenshot(path=str(admin_site.shots_dir / "a3-markup-list.png"), full_page=True)
    page.click("tr.incident a")
    assert page.locator("#incident-title").inner_text() == f"Incident {incident}"
    # the console's own scripts (its two and the map library it serves), none from a name
    sources = sorted(s.get_attribute("src") for s in page.locator("script").element_handles())
    assert sources == ["/static/console.js", "/static/map.js", "/vendor/leaflet/leaflet.js"]
    assert page.locator("img").count() == 0
    page.screenshot(path=str(admin_site.shots_dir / "a4-markup-incident.png"), full_page=True)
    assert dialogs == []
    page.context.close()


def test_dashboard_shows_the_figures_of_earwitness_stats(admin_site, browser):
    incident = admin_site.incident_id()
    reviewer = _login(browser, admin_site.base_url, "rev")
    reviewer.goto(f"{admin_site.base_url}/incident/{reviewer.evaluate('encodeURIComponent', incident)}")
    reviewer.select_option("#review select[name=action]", "confirm")
    reviewer.fill("#review textarea[name=reason]", "gunfire on many sensors")
    reviewer.click("#review button[type=submit]")
    reviewer.select_option("#disposition select[name=disposition]", "casings found")
    reviewer.click("#disposition button[type=submit]")
    reviewer.context.close()
    page = _login(browser, admin_site.base_url, "ana")
    page.click("#nav a[href='/dashboard']")
    for by in ("area", "class", "confidence"):
        page.goto(f"{admin_site.base_url}/dashboard?by={by}")
        # The server's own configuration: its database and its [console] areas.
        done = subprocess.run([sys.executable, "-m", "earwitness", "stats", str(admin_site.config), "--by", by,
                               "--format", "json"], capture_output=True, text=True, timeout=WAIT_S)
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)["rows"]
        shown = [[td.inner_text() for td in tr.locator("td").all()] for tr in page.locator("#stats tr.stats-row").all()]
        assert [r[:7] for r in shown] == [[str(r[c]) for c in (by, "alerts", *("confirmed", "dismissed", "reclassified",
                                                                              "unreviewed", "casings found"))] for r in rows]
        header = [th.get_attribute("data-col") or th.inner_text() for th in page.locator("#stats th").all()]
        for cells, row in zip(shown, rows):
            for name in ("confirmed", "evidence"):
                share, lo, hi = (row[name + suffix] for suffix in ("_share", "_ci_low", "_ci_high"))
                expected = "-" if share is None else f"{share * 100:.1f}% ({lo * 100:.1f}-{hi * 100:.1f}%)"
                assert cells[header.index(name + "_share")] == expected
        if by == "area":
            assert [(r["area"], r["alerts"], r["confirmed"], r["evidence"]) for r in rows] == [
                ("Elsewhere", 0, 0, 0), ("Range", 1, 1, 1)]
            page.screenshot(path=str(admin_site.shots_dir / "a5-dashboard.png"), full_page=True)
    page.context.close()
