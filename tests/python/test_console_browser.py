"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

What a browser adds over the Rust tests: it really keeps (or drops) the `__Host-` cookie on
http://127.0.0.1, it really enforces the CSP (a blocked inline script or style is a console
error here), it sends its own `Origin` and `Sec-Fetch-*` headers, and the copy button really
writes the clipboard. Screenshots of each page land in tests/python/.screenshots/.
"""

import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

from conftest import start_gateway

playwright_api = pytest.importorskip("playwright.sync_api")

SHOTS = os.path.join(os.path.dirname(__file__), ".screenshots")
CHROMIUM = os.environ.get("GATEHOUSE_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's package)")
        pytest.skip("chromium is not installed")
    os.makedirs(SHOTS, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def console(fake):
    proc, gw = start_gateway(fake)
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


class Tab:
    """One browser context (its own cookie jar) with one page, recording console errors."""

    def __init__(self, browser, gw):
        self.gw = gw
        self.context = browser.new_context()
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.admin_url)
        self.page = self.context.new_page()
        self.errors = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path):
        return self.page.goto(self.gw.admin_url + path)

    def sign_in(self, token):
        self.go("/sign-in")
        self.page.get_by_label("Admin token").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_load_state()

    def shot(self, name):
        self.page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)

    def nav(self, name):
        return self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name)

    def heading(self):
        return self.page.locator("h1").inner_text()

    def close(self):
        assert not self.errors, f"console errors (a CSP violation shows here): {self.errors}"
        self.context.close()


def mint(gw, role, org=None):
    body = {"name": f"{role}-console", "role": role}
    if org:
        body["org"] = org
    return gw.admin_post("/admin/v1/tokens", body)


def models_status(gw, key):
    req = urllib.request.Request(gw.data_url + "/v1/models", headers={"Authorization": "Bearer " + key})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_sign_in_create_copy_use_and_revoke_a_key(chromium, console):
    tab = Tab(chromium, console)
    tab.go("/keys")
    assert tab.heading() == "Sign in", "no session: the sign-in page"
    tab.shot("sign-in")
    tab.sign_in(mint(console, "platform_admin")["token"])
    assert tab.page.url.endswith("/"), tab.page.url
    assert tab.heading() == "Overview"
    cookie = [c for c in tab.context.cookies() if c["name"] == "__Host-gatehouse-session"]
    assert len(cookie) == 1, tab.context.cookies()
    c = cookie[0]
    assert (c["secure"], c["httpOnly"], c["sameSite"], c["path"], c["expires"]) == (True, True, "Strict", "/", -1)
    assert tab.page.evaluate("document.cookie") == "", "scripts cannot read the session"
    tab.shot("overview")

    tab.nav("API keys").click()
    tab.page.get_by_label("Name", exact=True).fill("browser-made")
    tab.page.get_by_label("Expires after (days, empty for never)").fill("30")
    tab.page.get_by_role("button", name="Create key").click()
    assert tab.heading() == "Key created"
    secret = tab.page.locator("#secret").inner_text()
    assert secret.startswith("gth_")
    tab.page.get_by_role("button", name="Copy").click()
    tab.page.get_by_role("button", name="Copied").wait_for()
    assert tab.page.evaluate("navigator.clipboard.readText()") == secret
    tab.shot("key-created")
    assert models_status(console, secret) == 200

    # the secret is not in the list, nor anywhere else the page can reach again
    tab.go("/keys")
    assert secret not in tab.page.content()
    row = tab.page.locator("tr", has_text="browser-made")
    assert "active" in row.inner_text()
    tab.shot("keys")
    row.get_by_role("button", name="Revoke key browser-made").click()
    assert "revoked" in tab.page.locator("tr", has_text="browser-made").inner_text()
    tab.page.wait_for_timeout(1200)
    assert models_status(console, secret) == 401

    # the decisions are in the audit trail, and the audit page shows them
    tab.nav("Audit").click()
    tab.page.get_by_label("Action").fill("key.revoke")
    tab.page.get_by_role("button", name="Filter").click()
    body = tab.page.locator("tbody").inner_text()
    assert "key.revoke" in body and "key.create" not in body, body
    tab.shot("audit")

    tab.page.get_by_role("button", name="Sign out").click()
    assert tab.heading() == "Sign in"
    tab.go("/")
    assert tab.heading() == "Sign in", "signed out on the server"
    tab.close()


def test_a_member_sees_no_admin_pages_and_sessions_end_when_revoked(chromium, console):
    org = console.admin_post("/admin/v1/orgs", {"name": "browser-acme"})["id"]
    member = Tab(chromium, console)
    member.sign_in(mint(console, "member", org)["token"])
    assert member.heading() == "Overview"
    assert member.nav("Audit").count() == 0
    member.go("/audit")
    assert member.heading() == "Not done"
    assert "permission_denied" in member.page.locator("main").inner_text()
    member.shot("member-refused")
    assert member.errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    member.errors.clear()

    admin = Tab(chromium, console)
    admin.sign_in(mint(console, "org_admin", org)["token"])
    admin.go("/sessions")
    rows = admin.page.locator("tbody tr")
    assert rows.count() == 2, "the org admin sees both sessions of its org"
    admin.shot("sessions")
    admin.page.locator("tbody tr", has_text="member").get_by_role("button", name="End").click()
    assert admin.page.locator("tbody tr").count() == 1

    member.go("/")
    assert member.heading() == "Sign in", "revoked: the next request is signed out"
    member.close()
    admin.close()


def test_the_pages_are_usable_from_the_keyboard_and_at_200_percent(chromium, console):
    tab = Tab(chromium, console)
    tab.sign_in(mint(console, "platform_admin")["token"])
    tab.go("/keys")
    tab.page.keyboard.press("Tab")
    assert tab.page.evaluate("document.activeElement.textContent") == "Skip to content"
    tab.page.keyboard.press("Enter")
    assert tab.page.evaluate("document.activeElement.id") == "main"
    # every form field has a label a screen reader announces
    unlabelled = tab.page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden])')]
             .filter(i => !i.labels || i.labels.length === 0).map(i => i.name)"""
    )
    assert unlabelled == []
    # 200% zoom of a 1280-pixel window is a 640-pixel CSS viewport: nothing may be wider than
    # it (tables scroll inside their own box), so nobody scrolls sideways to read a page
    tab.page.set_viewport_size({"width": 640, "height": 800})
    for path in ["/", "/keys", "/sessions", "/audit"]:
        tab.go(path)
        fits = tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, f"{path} is wider than a 640-pixel viewport"
    tab.shot("audit-at-640-pixels")
    tab.close()


def test_a_page_from_another_site_cannot_act_for_the_session(chromium, console, tmp_path):
    tab = Tab(chromium, console)
    tab.sign_in(mint(console, "platform_admin")["token"])
    before = json.dumps(console.admin_get("/admin/v1/keys"))
    # an attacker's page auto-submits a form to the console (no token: it cannot read one)
    evil = tmp_path / "evil.html"
    evil.write_text(
        f"""<form id=f method=post action="{console.admin_url}/keys">
        <input name=name value=forged><input name=csrf value=guess></form>
        <script>document.getElementById('f').submit()</script>"""
    )
    tab.page.goto(evil.as_uri())
    tab.page.wait_for_load_state()
    # SameSite=Strict: the cookie did not go along, so the console asks for a sign-in
    assert "forged" not in json.dumps(console.admin_get("/admin/v1/keys"))
    assert json.dumps(console.admin_get("/admin/v1/keys")) == before
    tab.errors.clear()
    tab.context.close()
