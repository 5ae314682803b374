"""The portal in real headless Chromium (Debian's, driven by Playwright) and over plain HTTP.

One portal (``anning serve`` in a subprocess, 3 days of simulated history) serves the whole module. Screenshots
of every page at desktop (1440x900) and phone (390x844) size go to ``test-artifacts/portal/`` (or
``$ANNING_TEST_ARTIFACTS``): look at them.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port
from portal_harness import (
    DESKTOP,
    PHONE,
    USERS,
    Portal,
    checksum_of,
    login,
    offline_context,
    require_chromium,
    seed_store,
    statement_ids,
    wait_drawn,
)

require_chromium()

ARTIFACTS = Path(os.environ.get("ANNING_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "portal"

# who may open which page: written out here from ARCHITECTURE.md §6 and the issue, not read from the code
EXPECTED = {
    "admin": {"overview", "twin", "scenarios", "enterprise", "device", "alarms", "dispatch", "carbon", "reports",
              "admin", "account"},
    "operator": {"overview", "twin", "scenarios", "enterprise", "device", "alarms", "dispatch", "carbon", "reports",
                 "account"},
    "ent-e01": {"overview", "twin", "enterprise", "device", "alarms", "carbon", "reports", "account"},
    "visitor": {"overview", "twin", "account"},
}
ALL_PAGES = sorted(EXPECTED["admin"])


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    var = tmp_path_factory.mktemp("portal")
    url = seed_store(var, days=3)
    p = Portal(url, var, free_port()).start()
    yield p
    p.stop()


class Client:
    """A plain HTTP client with its own cookie jar (what a script with a stolen or edited request can do)."""

    def __init__(self, portal: Portal):
        self.base, self.jar = portal.base, http.cookiejar.CookieJar()
        handlers = [urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()]
        if portal.ssl_context():
            handlers.append(urllib.request.HTTPSHandler(context=portal.ssl_context()))
        self.opener = urllib.request.build_opener(*handlers)

    def get(self, path: str) -> tuple[int, bytes, dict]:
        try:
            with self.opener.open(self.base + path, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def xsrf(self) -> str:
        """The log-in form's CSRF token (GET /login sets the ``_xsrf`` cookie it must match)."""
        _status, body, _headers = self.get("/login")
        return re.search(rb'name="_xsrf" value="([^"]+)"', body).group(1).decode()

    def post(self, path: str, fields: dict) -> tuple[int, dict]:
        try:
            with self.opener.open(self.base + path, data=urllib.parse.urlencode(fields).encode(), timeout=30) as r:
                return r.status, dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers)

    def login(self, username: str, password: str | None = None) -> int:
        data = urllib.parse.urlencode({"username": username, "_xsrf": self.xsrf(),
                                       "password": password if password is not None else USERS[username][0]})
        try:
            with self.opener.open(self.base + "/login", data=data.encode(), timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# ------------------------------------------------------------------------------------------------ over HTTP
@pytest.mark.parametrize("username", sorted(EXPECTED))
def test_each_role_opens_exactly_its_pages(portal, username):
    c = Client(portal)
    assert c.get("/overview")[0] == 302                        # not logged in: to the log-in page
    assert c.login(username) == 302
    for slug in ALL_PAGES:
        status, body, _ = c.get(f"/{slug}")
        assert status == (200 if slug in EXPECTED[username] else 403), (username, slug, status)


def test_enterprise_user_cannot_download_another_enterprises_statement(portal):
    ids = statement_ids(portal.url)
    c = Client(portal)
    assert c.get(f"/statements/{ids['E01']}")[0] == 302        # no cookie: log in first
    c.login("ent-e01")
    status, body, headers = c.get(f"/statements/{ids['E01']}")
    assert status == 200 and body.startswith(b"%PDF-")
    assert "sha256:" + hashlib.sha256(body).hexdigest() == checksum_of(portal.url, ids["E01"])   # the file recorded
    assert "attachment" in headers["Content-Disposition"]
    assert c.get(f"/statements/{ids['E02']}")[0] == 403
    assert c.get("/statements/999999")[0] == 403                # no hint whether an id exists
    op = Client(portal)
    op.login("operator")
    assert op.get(f"/statements/{ids['E02']}")[0] == 200


def test_wrong_password_then_lock_out(portal):
    from anning_lib.auth.access import SYSTEM
    from anning_lib.auth.audit import read_audit
    from anning_lib.auth.users import add_user
    from anning_lib.store.engine import make_engine

    engine = make_engine(portal.url)
    add_user(engine, SYSTEM, "locktest", "locktest-pass-1", "operator")
    c = Client(portal)
    for _ in range(5):                                          # ANNING_LOGIN_MAX_FAILURES default 5
        assert c.login("locktest", "wrong-password") == 401
    assert c.login("locktest", "locktest-pass-1") == 401        # locked: even the right password
    assert c.get("/overview")[0] == 302
    actions = [r["action"] for r in read_audit(engine, target="user:locktest")]
    assert actions.count("login_failed") == 6 and "user_locked" in actions and "login" not in actions
    assert all("locktest-pass-1" not in str(r["detail"]) for r in read_audit(engine))


def test_logout_and_deactivation_end_the_session(portal):
    from anning_lib.auth.access import SYSTEM
    from anning_lib.auth.users import add_user, set_active
    from anning_lib.store.engine import make_engine

    engine = make_engine(portal.url)
    add_user(engine, SYSTEM, "shortlived", "shortlived-pass", "operator")
    c = Client(portal)
    c.login("shortlived", "shortlived-pass")
    assert c.get("/alarms")[0] == 200
    set_active(engine, SYSTEM, "shortlived", False)
    assert c.get("/alarms")[0] == 302                           # the same cookie no longer opens anything
    set_active(engine, SYSTEM, "shortlived", True)
    assert c.get("/alarms")[0] == 200
    assert c.get("/logout")[0] == 200
    assert c.get("/alarms")[0] == 302


def test_session_cookie_is_signed_and_http_only(portal):
    c = Client(portal)
    c.login("operator")
    cookie = next(k for k in c.jar if k.name == "user")
    assert cookie.value != "operator" and cookie.has_nonstandard_attr("HttpOnly")
    forged = Client(portal)
    forged.jar.set_cookie(http.cookiejar.Cookie(0, "user", "admin", None, False, "127.0.0.1", False, False, "/",
                                                True, False, None, False, None, None, {}))
    assert forged.get("/admin")[0] == 302                       # an unsigned name is nobody


# ------------------------------------------------------------------------------------------------ in Chromium
def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("username", ["admin", "ent-e01", "visitor"])
def test_pages_draw_at_desktop_and_phone_size_with_no_outside_request(portal, browser, username):
    """Every page the role may open draws completely at both sizes, and no request leaves the machine
    (anything not to the portal itself is aborted and recorded)."""
    outside: list[str] = []
    for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        ctx = offline_context(browser, portal.base, size, outside)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        login(page, portal.base, username)
        for slug in sorted(EXPECTED[username]):
            page.goto(f"{portal.base}/{slug}")
            wait_drawn(page)
            links = page.locator("nav.anning-header a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
            assert {h.strip("/") for h in links if h.startswith("/") and not h.startswith(("/lang", "/logout"))} \
                == EXPECTED[username], (username, slug)
            _shoot(page, f"{slug}-{username}-{size_name}")
        assert not errors, errors
        ctx.close()
    assert outside == []


def test_enterprise_page_refuses_another_enterprise(portal, browser):
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    login(page, portal.base, "ent-e01")
    page.goto(f"{portal.base}/enterprise?enterprise=E02")
    wait_drawn(page)
    refusal = page.get_by_text(re.compile("may not see"))     # the library's AccessError, shown on the page
    refusal.first.wait_for(timeout=10000)
    assert "E02" in refusal.first.inner_text()
    from anning_lib.park import load_park

    e02 = load_park().enterprise("E02")
    assert page.get_by_text(e02.name).count() == 0 and page.get_by_text(e02.name_en).count() == 0
    _shoot(page, "enterprise-refused-ent-e01-desktop")
    ctx.close()


def test_https_with_a_certificate(tmp_path):
    """With a certificate the portal speaks HTTPS and marks the session cookie Secure."""
    from anning_lib.ingest.pki import ensure_server_cert

    crt, key = ensure_server_cert(tmp_path / "pki", "portal")
    url = seed_store(tmp_path, days=1, statements=False)
    p = Portal(url, tmp_path, free_port(), env={"ANNING_PORTAL_CERTFILE": str(crt),
                                                "ANNING_PORTAL_KEYFILE": str(key)}).start()
    try:
        assert p.base.startswith("https://")
        c = Client(p)
        assert c.login("operator") == 302
        cookie = next(k for k in c.jar if k.name == "user")
        assert cookie.secure
        assert c.get("/overview")[0] == 200
    finally:
        p.stop()


def _count(url: str, table: str) -> int:
    from anning_lib.store.engine import make_engine
    from anning_lib.store.timeseries import count_rows

    engine = make_engine(url)
    try:
        return count_rows(engine, table)
    finally:
        engine.dispose()


def test_admin_forms_refuse_bad_input_and_change_nothing(portal, browser):
    """A point with an unknown unit, a tariff with overlapping periods and a storage whose lowest SOC is above its
    highest: a clear message, nothing stored."""
    from playwright.sync_api import expect

    from anning_lib.config import get_settings

    points, audits = _count(portal.url, "point"), _count(portal.url, "audit_log")
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    login(page, portal.base, "admin")
    page.goto(f"{portal.base}/admin")
    wait_drawn(page)
    page.get_by_text("设备与测点").click()
    page.get_by_label("测点编号（如 p_kw）").fill("p2_kw")
    page.get_by_label("单位").fill("kwhh")
    page.get_by_role("button", name="添加测点").click()
    page.get_by_text("unknown unit 'kwhh'").wait_for(timeout=10000)
    _shoot(page, "admin-point-refused-desktop")
    assert _count(portal.url, "point") == points

    tariff = get_settings().data_dir / "tariffs" / "yunnan_tou_2026.yaml"
    before = tariff.read_bytes()
    page.get_by_text("电价", exact=True).click()
    page.get_by_role("combobox").first.select_option("yunnan_tou_2026.yaml")
    box = page.locator("textarea").first
    expect(box).to_have_value(re.compile("bands:"), timeout=10000)
    text = box.input_value()
    first = '{band: flat,   start: "00:00", end: "02:00"}'
    assert first in text
    box.fill(text.replace(first, '{band: flat,   start: "00:00", end: "03:00"}'))   # now overlaps 02:00-06:00
    box.blur()
    page.get_by_role("button", name="校验并保存").click()
    page.get_by_text("overlaps").first.wait_for(timeout=10000)
    _shoot(page, "admin-tariff-refused-desktop")
    assert tariff.read_bytes() == before

    park_file = get_settings().park_path                      # a storage's SOC window upside down
    park_before = park_file.read_bytes()
    page.get_by_text("调度策略", exact=True).click()
    page.get_by_label("SOC 下限（0–1）").fill("0.95")
    page.get_by_label("SOC 上限（0–1）").fill("0.9")
    page.get_by_label("SOC 上限（0–1）").blur()
    page.locator(".bk-btn-primary", has_text="校验并保存").last.click()
    page.get_by_text(re.compile("soc_min_frac 0.95 must be below soc_max_frac 0.9")).wait_for(timeout=10000)
    _shoot(page, "admin-strategy-refused-desktop")
    assert park_file.read_bytes() == park_before
    assert _count(portal.url, "audit_log") == audits + 1        # only the admin's log-in
    ctx.close()


def test_custom_report_on_the_portal_keeps_to_the_users_enterprise(portal, browser):
    """An enterprise user runs a custom report on the reports page and downloads it: its own enterprise only."""
    import csv
    import io

    ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = ctx.new_page()
    login(page, portal.base, "ent-e01")
    page.goto(f"{portal.base}/reports")
    wait_drawn(page)
    page.get_by_text("自定义报表").first.click()
    page.get_by_role("button", name="运行").click()
    page.get_by_text(re.compile(r"已生成 \d+ 行")).wait_for(timeout=30000)
    _shoot(page, "reports-custom-ent-e01-desktop")
    with page.expect_download(timeout=30000) as info:
        page.get_by_role("button", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8-sig"))))
    assert rows and {r["enterprise_id"] for r in rows} == {"E01"}
    assert all(float(r["e_kwh"]) > 0 for r in rows if r["e_kwh"])      # E01's meters run all day
    ctx.close()


def test_enterprise_page_shows_the_advice(portal, browser):
    """The advice section (节能优化建议) under the enterprise page: every measure of the catalogue, recommended ones
    first with figures; the portal's three days of history hold no whole month, so it is the month so far."""
    import yaml

    names = [m["name"] for m in yaml.safe_load((Path(__file__).parent.parent / "data" / "advice" / "measures.yaml")
                                               .read_text(encoding="utf-8"))["measures"]]
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, portal.base, "ent-e01")
    page.goto(f"{portal.base}/enterprise")
    wait_drawn(page)
    page.get_by_text("节能优化建议", exact=True).first.wait_for(timeout=30000)
    rows = page.locator("table.advice tbody tr")
    rows.first.wait_for(timeout=30000)
    assert rows.count() == len(names)
    assert sum(page.get_by_text(n, exact=True).count() for n in names) >= 1
    first = rows.first
    assert "off" not in (first.get_attribute("class") or "") and first.locator("td.rank").inner_text() == "1"
    assert re.search(r"\d,\d{3}", page.locator("table.advice").inner_text())    # thousands separators
    # the period it was valued on: no whole month in 3 days, so the month so far (the last days on a month's 1st)
    assert page.get_by_text(re.compile("本月至今|最近 .* 天")).count() >= 1
    _shoot(page, "enterprise-advice-ent-e01-desktop")
    assert not errors, errors
    ctx.close()


def test_enterprise_page_over_http_refuses_another_enterprise_and_bad_input(portal):
    """The server-rendered enterprise page with A's cookie and B's id: 403, the library's message, none of B's
    names, an audit row; a malformed month or an unknown enterprise: 400 naming the field and value."""
    import json

    from anning_lib.auth.audit import read_audit
    from anning_lib.park import load_park
    from anning_lib.store.engine import make_engine

    e02 = load_park().enterprise("E02")
    c = Client(portal)
    assert c.get("/enterprise?enterprise=E02")[0] == 302                    # no cookie: log in first
    c.login("ent-e01")
    status, body, headers = c.get("/enterprise?enterprise=E02")
    text = body.decode()
    assert status == 403 and "may not see" in text and "E02" in text
    assert e02.name not in text and e02.name_en not in text
    assert "no-store" in headers["Cache-Control"]
    refused = read_audit(make_engine(portal.url), action_prefix="page_refused")
    assert any("enterprise=E02" in r["target"] for r in refused)
    status, body, _ = c.get("/enterprise")
    assert status == 200 and "E01" in body.decode() and "E02" not in body.decode()
    op = Client(portal)
    op.login("operator")
    status, body, _ = op.get("/enterprise?enterprise=E02&month=2026-13")
    assert status == 400 and "month" in body.decode() and "2026-13" in body.decode()
    status, body, _ = op.get("/enterprise?enterprise=E99")
    assert status == 400 and "E99" in body.decode()
    assert op.get("/enterprise?enterprise=E02")[0] == 200
    assert json.loads(Client(portal).get("/overview/live")[1]) == {"error": "not logged in"}
    visitor = Client(portal)
    visitor.login("visitor")
    status, body, _ = visitor.get("/enterprise?lang=en")
    assert status == 403 and "You may not open this page" in body.decode() and 'href="/overview"' in body.decode()


def test_overview_live_parts_are_scoped(portal):
    """What a big screen fetches every 5 s: every enterprise for an operator, its own for an enterprise user,
    none for a visitor; 401 without a session."""
    import json

    from anning_lib.park import load_park

    ids = [e.id for e in load_park().enterprises]
    assert Client(portal).get("/overview/live")[0] == 401
    seen = {}
    for user in ("operator", "ent-e01", "visitor"):
        c = Client(portal)
        c.login(user)
        status, body, headers = c.get("/overview/live?lang=en")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        parts = json.loads(body)
        assert set(parts) == {"ov-head", "ov-tiles", "ov-plan", "ov-bars"}
        seen[user] = {e for e in ids if f"{e} " in parts["ov-bars"]}
        assert ("kW" in parts["ov-plan"]) == (user != "visitor")
    assert seen == {"operator": set(ids), "ent-e01": {"E01"}, "visitor": set()}


def test_overview_refreshes_in_place(portal, browser):
    """A new reading reaches an open big screen within one refresh, without reloading the page."""
    import pandas as pd

    from anning_lib.park import load_park
    from anning_lib.store.engine import make_engine
    from anning_lib.store.timeseries import write_measurements

    park = load_park()
    ctx = browser.new_context(viewport=DESKTOP)
    page = ctx.new_page()
    login(page, portal.base, "operator")
    page.goto(f"{portal.base}/overview")
    wait_drawn(page)
    page.evaluate("() => { window.__same_page = true; }")
    ts = pd.Timestamp.now(tz="UTC").floor("s") + pd.Timedelta(seconds=1)
    grid = next(d.id for d in park.park_devices if d.type == "grid_meter")
    write_measurements(make_engine(portal.url), pd.DataFrame({"tag": [f"{grid}.p_kw"], "ts": [ts], "value": [1.0]}))
    shown = ts.tz_convert(park.meta.site.timezone).strftime("%Y-%m-%d %H:%M:%S")
    page.locator("#ov-head", has_text=shown).wait_for(timeout=20000)     # 4 s cache + 5 s refresh at most
    assert page.evaluate("() => window.__same_page === true")
    _shoot(page, "overview-refreshed-operator-desktop")
    ctx.close()


# ------------------------------------------------------------------------------------------------ hardening
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
                    "Referrer-Policy": "same-origin"}


def test_every_response_carries_the_security_headers(portal):
    """The log-in page, a Panel page and its static script, a server-rendered page and its script, the live parts,
    a refusal and a 404 all carry them (OWASP headers)."""
    c = Client(portal)
    c.login("operator")
    status, body, _ = c.get("/alarms")
    script = "/" + re.search(rb'src="/?(static/js/bokeh[^"]+)"', body).group(1).decode()
    own = re.search(rb'src="(/assets/portal\.js\?v=[0-9a-f]+)"', c.get("/overview")[1]).group(1).decode()
    for path, want in (("/login", 200), ("/alarms", 200), (script, 200), ("/overview", 200), (own, 200),
                       ("/overview/live", 200), ("/admin", 403), ("/no-such-page", 404)):
        status, _body, headers = c.get(path)
        assert status == want, path
        for name, value in SECURITY_HEADERS.items():
            assert headers.get(name) == value, (path, name)
        csp = headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'self'" in csp and "object-src 'none'" in csp, path
        assert "Strict-Transport-Security" not in headers            # plain HTTP on loopback: no HSTS


def test_login_without_the_csrf_token_is_refused(portal):
    from anning_lib.auth.audit import read_audit
    from anning_lib.store.engine import make_engine

    c = Client(portal)
    before = len(read_audit(make_engine(portal.url), action_prefix="login"))
    status, _ = c.post("/login", {"username": "operator", "password": USERS["operator"][0]})
    assert status == 403                                          # no token: not even tried
    status, _ = c.post("/login", {"username": "operator", "password": USERS["operator"][0], "_xsrf": "forged"})
    assert status == 403
    assert len(read_audit(make_engine(portal.url), action_prefix="login")) == before
    assert c.login("operator") == 302                             # with the form's token it works


def test_login_attempts_per_address_are_limited(tmp_path):
    url = seed_store(tmp_path, days=1, statements=False)
    p = Portal(url, tmp_path, free_port(), env={"ANNING_LOGIN_RATE_PER_MIN": "3"}).start()
    try:
        c = Client(p)
        codes = [c.login("visitor", "wrong-password-1") for _ in range(4)]
        assert codes == [401, 401, 401, 429]                      # the 4th attempt within a minute
        assert c.login("visitor") == 429                          # even with the right password, for a minute
    finally:
        p.stop()
