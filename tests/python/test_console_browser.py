"""The web console in a real headless Chromium (Debian's `chromium`, driven by Playwright).

What a browser adds over the Rust tests: it really keeps (or drops) the `__Host-` cookie on
http://127.0.0.1, it really enforces the CSP (a blocked inline script or style is a console
error here), it sends its own `Origin` and `Sec-Fetch-*` headers, and the copy button really
writes the clipboard. Screenshots of each page land in tests/python/.screenshots/.
"""

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
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
        self.page.get_by_role("button", name="Sign in", exact=True).click()
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


def chat(gw, key):
    body = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]}).encode()
    req = urllib.request.Request(
        gw.data_url + "/v1/chat/completions",
        data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


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
    for _ in range(40):
        if models_status(console, secret) == 401:
            break
        tab.page.wait_for_timeout(50)
    assert models_status(console, secret) == 401, "a revoked key stops within two seconds"

    # traffic reaches the usage ledger (written behind), and the usage page charts it
    for _ in range(3):
        chat(console, console.api_key)
    org = console.admin_get("/admin/v1/orgs")["data"][0]["id"]
    for _ in range(100):
        if console.admin_get(f"/admin/v1/orgs/{org}/usage")["total"]["requests"] >= 3:
            break
        tab.page.wait_for_timeout(100)
    tab.nav("Usage").click()
    assert tab.heading() == "Usage"
    assert tab.page.locator("svg.chart rect").count() >= 1
    assert "fake-model" in tab.page.locator("table", has_text="Per model").inner_text()
    tab.shot("usage")

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
    for path in ["/", "/orgs", "/keys", "/usage", "/sessions", "/audit", "/account", "/tokens", "/capabilities", "/providers", "/webhooks"]:
        tab.go(path)
        fits = tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert fits, f"{path} is wider than a 640-pixel viewport"
    tab.shot("audit-at-640-pixels")
    tab.page.set_viewport_size({"width": 1280, "height": 800})
    tab.go("/orgs")
    tab.page.get_by_role("link", name="default").click()
    assert tab.page.locator("caption", has_text="Members").count() == 1
    tab.shot("organization")
    tab.page.locator("tbody").first.get_by_role("link", name="default").click()
    assert tab.page.get_by_label("Browser origins (one per line, e.g. https://app.example.com)").count() == 1
    tab.shot("project")
    tab.page.get_by_role("link", name="Guardrail policy").click()
    assert tab.heading() == "Guardrail policy"
    tab.shot("guardrails")
    tab.page.go_back()
    tab.page.get_by_role("link", name="Limits and budgets").click()
    assert tab.heading() == "Limits and budgets"
    assert tab.page.get_by_label("Policy (JSON; empty for none)").count() == 1
    fits = tab.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the limits page is wider than the window"
    tab.shot("limits")
    # every other page, as it renders, for the record
    for path, name in [("/orgs", "organizations"), ("/tokens", "admin-tokens"), ("/capabilities", "capabilities"),
                       ("/providers", "providers"), ("/webhooks", "webhooks"), ("/account", "account")]:
        tab.go(path)
        tab.shot(name)
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


# ---- sign-in with an OpenID Provider (node oidc-provider, tests/oidc/provider.mjs) ----

OIDC_DIR = os.path.join(os.path.dirname(__file__), "..", "oidc")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    if not os.path.isdir(os.path.join(OIDC_DIR, "node_modules")):
        if os.environ.get("CI") == "true":
            pytest.fail("tests/oidc/node_modules is missing (scripts/test.sh runs npm ci)")
        pytest.skip("npm ci --prefix tests/oidc has not run")
    out = tmp_path_factory.mktemp("op")
    proc = subprocess.Popen(
        ["node", os.path.join(OIDC_DIR, "provider.mjs"), "0", "g1", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    issuer = json.loads(proc.stdout.readline())["issuer"]
    yield issuer
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sso(fake, idp):
    port = free_port()
    extra = f"""
[[oidc]]
name = "corp"
issuer = "{idp}"
planes = ["console"]
claims = {{ org = "/org", roles = "/roles" }}
admin_roles = {{ "console-admins" = "org_admin", "console-viewers" = "viewer", "console-root" = "platform_admin" }}
client_id = "console"
client_secret = "env:CONSOLE_CLIENT_SECRET"
redirect_uri = "http://127.0.0.1:{port}/sign-in/oidc/callback"
scopes = ["openid", "email", "profile", "gatehouse"]
jit_membership = true
sign_out_at_provider = true

[console]
# a short confirmation window, so a test can see a session grow stale
reauth_window_ms = 1500
"""
    proc, gw = start_gateway(fake, extra=extra, admin_port=port, env_extra={"CONSOLE_CLIENT_SECRET": "console-secret"})
    gw.org = gw.admin_post("/admin/v1/orgs", {"name": "acme"})["id"]
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


def sso_sign_in(tab, login, callbacks=None, signed_in=True):
    """Signs in at the provider as `login` (its development pages: any password)."""
    if callbacks is not None:
        tab.page.on("request", lambda r: callbacks.append(r.url) if "/sign-in/oidc/callback" in r.url else None)
    tab.page.get_by_role("link", name="Sign in with corp").click()
    tab.page.locator("input[name=login]").fill(login)
    tab.page.locator("input[name=password]").fill("any")
    tab.page.locator("button[type=submit]").click()
    tab.page.locator("button[type=submit]", has_text="Continue").click()
    tab.page.wait_for_url(lambda url: url.startswith(tab.gw.admin_url))
    if signed_in:
        # the callback page moves on by itself (Refresh), carrying the new session cookie
        tab.page.wait_for_url(lambda url: "/sign-in/oidc/callback" not in url)
    # the provider's own pages are not ours to hold to our CSP
    tab.errors = [e for e in tab.errors if "favicon" not in e and "Failed to load resource" not in e]


def test_single_sign_on_with_pkce_maps_roles_and_makes_members(chromium, sso):
    tab = Tab(chromium, sso)
    tab.go("/keys")
    tab.shot("sign-in-with-sso")
    callbacks = []
    sso_sign_in(tab, "ann", callbacks)
    assert tab.heading() == "API keys", "back where the browser was going"
    tab.go("/")
    main = tab.page.locator("main").inner_text()
    assert "org_admin" in main and "oidc:corp:ann" in main, main
    tab.shot("overview-sso")

    # the authorization request used PKCE (S256), a state and a nonce, and our exact callback
    members = sso.admin_get(f"/admin/v1/orgs/{sso.org}/members")["data"]
    assert [(m["email"], m["role"]) for m in members] == [("ann@example.com", "org_admin")], "just-in-time member"
    sessions = sso.admin_get("/admin/v1/sessions")["data"]
    assert [(x["method"], x["actor"]) for x in sessions] == [("oidc", "oidc:corp:ann")]
    events = sso.admin_get("/admin/v1/audit?action=console.sign_in")["data"]
    assert events[0]["outcome"] == "allowed" and events[0]["actor"] == "oidc:corp:ann", events[0]

    # the callback cannot be replayed: not in this browser, not in another
    assert len(callbacks) == 1
    replay = tab.page.goto(callbacks[0])
    assert replay.status == 401 and tab.heading() == "Sign in"
    other = Tab(chromium, sso)
    assert other.page.goto(callbacks[0]).status == 401
    other.go("/")
    assert other.heading() == "Sign in", "a stolen callback signs nobody in"
    other.errors.clear()
    other.close()

    # a new role takes a new sign-in: changing Ann's role ends her session
    ann = members[0]["user_id"]
    sso.admin_post(f"/admin/v1/orgs/{sso.org}/members/{ann}", {"role": "viewer"}, method="PATCH")
    assert sso.admin_get("/admin/v1/sessions")["data"] == []
    tab.go("/")
    assert tab.heading() == "Sign in", "the session with the old role ended"
    tab.errors.clear()
    tab.close()


def test_a_person_whose_roles_are_not_mapped_is_not_signed_in(chromium, sso):
    tab = Tab(chromium, sso)
    tab.go("/")
    sso_sign_in(tab, "eve", signed_in=False)
    assert tab.heading() == "Sign in"
    assert "no role in this gateway" in tab.page.locator("main").inner_text()
    assert not [c for c in tab.context.cookies() if c["name"] == "__Host-gatehouse-session"]
    tab.errors.clear()
    tab.close()

    # a new browser: the provider remembers who signed in at it in the last one
    tab = Tab(chromium, sso)
    tab.go("/")
    sso_sign_in(tab, "vic")
    tab.go("/keys")
    assert tab.page.get_by_role("button", name="Create key").count() == 0, "a viewer creates nothing"
    tab.close()



def test_signing_out_ends_the_session_at_the_provider_too(chromium, sso):
    tab = Tab(chromium, sso)
    tab.go("/")
    sso_sign_in(tab, "root")
    assert tab.heading() == "Overview"
    # control: with only our cookie gone, the provider still knows the person and signs them
    # back in without asking who they are
    tab.context.clear_cookies(name="__Host-gatehouse-session")
    tab.go("/sign-in")
    tab.page.get_by_role("link", name="Sign in with corp").click()
    # the provider only asks to confirm the earlier authorization: no login form
    tab.page.locator("button[type=submit]", has_text="Continue").click()
    tab.page.wait_for_url(lambda url: url.startswith(tab.gw.admin_url) and "/sign-in/oidc/callback" not in url)
    assert tab.heading() == "Overview", "the provider's session signed the person back in"

    # signing out here sends the browser to the provider's end-session page (RP-initiated logout)
    tab.page.get_by_role("button", name="Sign out").click()
    tab.page.wait_for_url(lambda url: not url.startswith(tab.gw.admin_url))
    assert "client_id=console" in tab.page.url, tab.page.url
    tab.page.locator("button[autofocus], button[type=submit]").first.click()
    tab.page.wait_for_load_state()
    assert not [c for c in tab.context.cookies() if c["name"] == "__Host-gatehouse-session"]
    # and now the provider asks who it is again
    tab.go("/sign-in")
    tab.page.get_by_role("link", name="Sign in with corp").click()
    tab.page.locator("input[name=login]").wait_for()
    tab.errors = []  # the provider's own pages are not ours to hold to our CSP
    tab.context.close()


def test_a_single_sign_on_session_confirms_at_its_provider_before_a_sensitive_action(chromium, sso):
    tab = Tab(chromium, sso)
    tab.go("/")
    sso_sign_in(tab, "ann")
    assert tab.heading() == "Overview"

    def mint_admin_token(name):
        tab.go("/tokens")
        tab.page.get_by_label("Name").fill(name)
        tab.page.get_by_role("button", name="Mint token").click()
        tab.page.wait_for_load_state()

    def confirm_at_provider(login):
        # the provider asks who it is although its own session is alive (prompt=login, max_age=0)
        tab.page.get_by_role("link", name="Confirm with corp").click()
        tab.page.locator("input[name=login]").fill(login)
        tab.page.locator("input[name=password]").fill("any")
        tab.page.locator("button[type=submit]").click()
        # the provider may ask to confirm the authorization again, or come straight back
        for _ in range(200):
            if tab.page.url.startswith(tab.gw.admin_url):
                break
            consent = tab.page.locator("button[type=submit]", has_text="Continue")
            if consent.count():
                consent.click()
            tab.page.wait_for_timeout(50)
        tab.page.wait_for_url(lambda url: url.startswith(tab.gw.admin_url))
        tab.errors = [e for e in tab.errors if "favicon" not in e and "Failed to load resource" not in e]

    # past the confirmation window, minting an admin token asks for a fresh proof
    tab.page.wait_for_timeout(1600)
    mint_admin_token("after-stale")
    assert tab.heading() == "Confirm it is you"
    tab.shot("confirm-at-provider")
    tab.errors.clear()  # the confirmation page answers 403
    confirm_at_provider("ann")
    tab.page.wait_for_url(lambda url: url.endswith("/tokens"))
    assert tab.heading() == "Admin tokens"
    mint_admin_token("fresh")
    assert "shown this once" in tab.page.locator("main").inner_text(), "confirmed: the token is minted"
    events = sso.admin_get("/admin/v1/audit?action=console.confirm")["data"]
    assert events[0]["outcome"] == "allowed" and events[0]["actor"] == "oidc:corp:ann", events[0]

    # someone else signing in at the provider does not confirm Ann's session
    tab.page.wait_for_timeout(1600)
    mint_admin_token("not-vic")
    assert tab.heading() == "Confirm it is you"
    tab.errors.clear()
    confirm_at_provider("vic")
    assert "not the person this session belongs to" in tab.page.locator("main").inner_text()
    tab.errors.clear()  # the refusal answers 401
    mint_admin_token("still-stale")
    assert tab.heading() == "Confirm it is you", "the session was not confirmed"
    tab.errors.clear()
    events = sso.admin_get("/admin/v1/audit?action=console.sign_in")["data"]
    assert events[0]["outcome"] == "denied", events[0]
    tab.close()


# ---- passkeys, with Chromium's virtual authenticator (DevTools `WebAuthn` domain) ----


@pytest.fixture(scope="module")
def passkey_console(fake):
    # a short confirmation window, so a test can see a session grow stale
    proc, gw = start_gateway(fake, extra="[console]\nreauth_window_ms = 1500\n")
    # WebAuthn refuses IP addresses as relying party ids: the loopback name is what works
    gw.console_url = gw.admin_url.replace("127.0.0.1", "localhost")
    yield gw
    proc.terminate()
    proc.wait(timeout=15)


class PasskeyTab(Tab):
    """A tab on http://localhost with a virtual authenticator that verifies its user."""

    def __init__(self, browser, gw, credential=None):
        super().__init__(browser, gw)
        self.cdp = self.context.new_cdp_session(self.page)
        self.cdp.send("WebAuthn.enable")
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        self.authenticator = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
        if credential:
            self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.authenticator, "credential": credential})

    def go(self, path):
        return self.page.goto(self.gw.console_url + path)

    def credentials(self):
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})["credentials"]

    def passkey(self, name, lands_on):
        self.page.get_by_role("button", name=name).click()
        self.page.wait_for_url(lambda url: url.split("?")[0].endswith(lands_on))
        self.page.wait_for_load_state()


def audit_actions(gw, action):
    return [e["outcome"] for e in gw.admin_get(f"/admin/v1/audit?action={action}&limit=100")["data"]]


def test_passkeys_register_sign_in_confirm_and_refuse_a_cloned_counter(chromium, passkey_console):
    gw = passkey_console
    tab = PasskeyTab(chromium, gw)
    tab.sign_in(mint(gw, "platform_admin")["token"])
    assert tab.heading() == "Overview"

    # registration, right after the first sign-in
    tab.go("/account")
    tab.page.get_by_label("Name").fill("Laptop")
    tab.page.get_by_role("button", name="Add a passkey").click()
    tab.page.locator("tbody tr", has_text="Laptop").wait_for()
    assert "allowed" in audit_actions(gw, "passkey.register")
    [cred] = tab.credentials()
    assert cred["isResidentCredential"], "a discoverable credential: sign-in needs no user name"
    assert cred["rpId"] == "localhost"
    tab.shot("account-passkeys")

    # passkey-only sign-in: no token, no name
    tab.page.get_by_role("button", name="Sign out").click()
    tab.page.wait_for_load_state()
    assert tab.heading() == "Sign in"
    tab.shot("sign-in-passkey")
    tab.passkey("Sign in with a passkey", "/")
    assert tab.heading() == "Overview"
    assert tab.page.locator("tbody tr", has_text="Laptop").count() == 0
    tab.go("/account")
    row = tab.page.locator("tbody tr", has_text="Laptop").inner_text()
    assert "never" not in row, "the sign-in was recorded as the passkey's last use"

    # a sensitive action after the confirmation window asks for the passkey again
    tab.page.wait_for_timeout(1600)
    tab.go("/audit/export?format=jsonl")
    assert tab.heading() == "Confirm it is you"
    tab.shot("confirm")
    tab.errors.clear()  # the confirmation page answers 403
    tab.go("/account")
    assert tab.page.get_by_role("button", name="Add a passkey").count() == 0, "stale: no adding passkeys"
    tab.page.get_by_role("link", name="Confirm it is you").click()
    tab.passkey("Confirm with a passkey", "/account")
    assert tab.page.get_by_role("button", name="Add a passkey").is_visible(), "confirmed: fresh again"
    assert "allowed" in audit_actions(gw, "console.confirm")

    # a copy of the key in another browser whose counter went back (a cloned authenticator)
    # is refused, audited, and leaves no session
    [cred] = tab.credentials()
    assert cred["signCount"] >= 2
    clone = PasskeyTab(chromium, gw, credential={**cred, "signCount": 0})
    clone.go("/sign-in")
    denied_before = audit_actions(gw, "console.sign_in").count("denied")
    clone.page.get_by_role("button", name="Sign in with a passkey").click()
    clone.page.get_by_text("That passkey was not accepted.").wait_for()
    assert clone.heading() == "Sign in"
    assert not [c for c in clone.context.cookies() if c["name"] == "__Host-gatehouse-session"]
    assert audit_actions(gw, "console.sign_in").count("denied") == denied_before + 1
    clone.errors.clear()  # the refused ceremony answers 401
    clone.close()

    # removal needs a fresh proof too
    tab.page.wait_for_timeout(1600)
    tab.go("/account")
    tab.page.get_by_role("button", name="Remove passkey Laptop").click()
    tab.page.wait_for_load_state()
    assert tab.heading() == "Confirm it is you"
    tab.errors.clear()
    tab.passkey("Confirm with a passkey", "/account")
    tab.page.get_by_role("button", name="Remove passkey Laptop").click()
    tab.page.wait_for_load_state()
    assert tab.heading() == "Your account"
    assert tab.page.locator("tbody tr", has_text="Laptop").count() == 0
    assert "allowed" in audit_actions(gw, "passkey.remove")
    tab.close()


# ---- a browser app calling the data plane (data-plane CORS per project) ----


FETCH_CHAT = """async ([url, key]) => {
  try {
    const r = await fetch(url + '/v1/chat/completions', {
      method: 'POST',
      headers: {'Authorization': 'Bearer ' + key, 'Content-Type': 'application/json'},
      body: JSON.stringify({model: 'mock', messages: [{role: 'user', content: 'hi'}]}),
    });
    return {status: r.status, object: (await r.json()).object, requestId: r.headers.get('x-request-id')};
  } catch (e) {
    return {error: String(e)};
  }
}"""


@pytest.fixture
def app_origin():
    """A browser app's page, served from loopback like the gateway (so the browser's local
    network checks treat both alike and only CORS decides)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>app</title><p>app</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()


def test_a_browser_app_reads_answers_only_for_its_projects_keys(chromium, console, app_origin):
    org = [o for o in console.admin_get("/admin/v1/orgs")["data"] if o["name"] == "default"][0]["id"]
    console.admin_post(f"/admin/v1/orgs/{org}/projects", {"name": "spa", "cors_origins": [app_origin]})
    console.admin_post(f"/admin/v1/orgs/{org}/projects", {"name": "backend"})
    allowed = console.admin_post("/admin/v1/keys", {"name": "spa-key", "org": "default", "project": "spa"})["key"]
    other = console.admin_post("/admin/v1/keys", {"name": "backend-key", "org": "default", "project": "backend"})["key"]

    context = chromium.new_context()
    page = context.new_page()
    page.goto(app_origin + "/")
    # the project's origins reach the preflight answer within its reload interval
    deadline = time.time() + 10
    while True:
        got = page.evaluate(FETCH_CHAT, [console.data_url, allowed])
        if "error" not in got or time.time() > deadline:
            break
        time.sleep(0.2)
    assert got.get("status") == 200 and got.get("object") == "chat.completion", got
    assert got["requestId"], "exposed to the page"
    # another project's key: the browser itself withholds the answer
    refused = page.evaluate(FETCH_CHAT, [console.data_url, other])
    assert "error" in refused and "Failed to fetch" in refused["error"], refused
    context.close()
