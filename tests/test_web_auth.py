"""Panel access control with Flask's test client: every route, anonymous / expired / wrong role,
CSRF on every POST, login throttling, sign-out revocation, security headers."""

from __future__ import annotations

import re
import time

import pytest

from controller import events as ev
from tests.support_web import CSRF_INPUT, PASSWORDS, Signed, login

SNAP = "/snapshot/0b4f8a52-8c4f-4f39-9a55-6f1e0c3a9d11"
# (method, path, role) for every route but sign-in and static files
ROUTES = [
    ("GET", "/", "staff"), ("GET", "/api/status", "staff"), ("GET", "/events", "staff"),
    ("GET", "/history", "staff"), ("GET", "/history.csv", "staff"), ("GET", SNAP, "staff"),
    ("GET", "/sim", "staff"), ("GET", "/sim/state", "staff"), ("GET", "/admin", "admin"),
    ("POST", "/logout", "staff"), ("POST", "/api/approve", "staff"), ("POST", "/api/deny", "staff"),
    ("POST", "/api/unlock", "staff"), ("POST", "/api/lockdown/start", "staff"),
    ("POST", "/api/lockdown/end", "staff"), ("POST", "/api/alarm/ack", "staff"), ("POST", "/api/missed/ack", "staff"),
    ("POST", "/api/panic", "staff"),
    ("POST", "/sim/press", "staff"), ("POST", "/sim/door", "staff"), ("POST", "/sim/exit", "staff"),
    ("POST", "/sim/panic", "staff"),
    ("POST", "/admin/users", "admin"), ("POST", "/admin/users/sam/remove", "admin"),
    ("POST", "/admin/users/sam/password", "admin"), ("POST", "/admin/sessions/abc/revoke", "admin"),
    ("POST", "/admin/journal/accept", "admin"),
    ("POST", "/admin/throttles/clear", "admin"),
    ("GET", "/api/intercom", "staff"), ("GET", "/api/intercom/mjpeg", "staff"),
    ("POST", "/api/intercom/offer", "staff"), ("POST", "/api/intercom/talk", "staff"),
    ("POST", "/api/intercom/hangup", "staff"),
]
ADMIN_ROUTES = [r for r in ROUTES if r[2] == "admin"]
POSTS = [r for r in ROUTES if r[0] == "POST"]


def test_route_table_covers_every_route(app):
    """If someone adds a route, this test makes them add it to the access matrix."""
    rules = {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}
             if r.endpoint not in ("static", "auth.login", "auth.login_post")}
    listed = {(m, p.replace(SNAP, "/snapshot/<request_id>").replace("/sam/", "/<username>/")
               .replace("/abc/", "/<session_id>/")) for m, p, _ in ROUTES}
    assert rules == listed


def _assert_rejected_anonymous(resp, method):
    if method == "GET" and resp.status_code == 302:
        assert resp.headers["Location"].startswith("/login")
    else:
        assert resp.status_code == 401, resp.get_data(as_text=True)


# The four access matrices below (~160 cases) change nothing and assert so: they share one
# controller and app per module (support_web.shared_app), so a case that leaked a change fails
# the cases after it too.


@pytest.mark.parametrize("method,path,role", ROUTES)
def test_anonymous_is_rejected(shared_app, shared_controller, method, path, role):
    app, controller = shared_app, shared_controller
    client = app.test_client()
    resp = client.open(path, method=method, data={"request_id": "x", "confirm": "yes"})
    _assert_rejected_anonymous(resp, method)
    assert controller.station.strike_on is False


@pytest.mark.parametrize("method,path,role", ROUTES)
def test_expired_session_is_rejected(shared_app, shared_controller, monkeypatch, method, path, role):
    app, controller = shared_app, shared_controller
    user = Signed(app.test_client(), "admin")
    store = app.extensions["panel_store"]
    later = time.monotonic() + store.idle_seconds + 60
    monkeypatch.setattr(store, "clock", lambda: later)     # restored for the next case
    resp = user.post(path, {"confirm": "yes"}) if method == "POST" else user.get(path)
    _assert_rejected_anonymous(resp, method)
    assert controller.status()["lockdown"] is None


@pytest.mark.parametrize("method,path,role", ADMIN_ROUTES)
def test_staff_cannot_use_admin_routes(shared_app, method, path, role):
    app, staff = shared_app, Signed(shared_app.test_client(), "sam")
    resp = staff.post(path, {"username": "eve", "password": "long-enough-pw", "role": "admin"}) \
        if method == "POST" else staff.get(path)
    assert resp.status_code == 403
    assert [u.username for u in app.extensions["panel_store"].users()] == ["admin", "sam"]


@pytest.mark.parametrize("token", [None, "", "wrong-token", "x" * 5000])
@pytest.mark.parametrize("method,path,role", POSTS)
def test_csrf_is_enforced_on_every_post(shared_app, shared_controller, method, path, role, token):
    app, controller = shared_app, shared_controller
    admin = Signed(app.test_client(), "admin")
    headers = {} if token is None else {"X-CSRF-Token": token}
    resp = admin.client.post(path, data={"request_id": "x", "confirm": "yes", "open": "1",
                                         "alarm": "tamper", "username": "eve", "role": "admin",
                                         "password": "long-enough-pw"}, headers=headers)
    assert resp.status_code == 400
    assert "CSRF" in resp.get_data(as_text=True)
    # nothing changed: no press, no unlock, no lockdown, no account, still signed in
    status = controller.status()
    assert status["ring"] is None and status["lockdown"] is None and status["door"] == "locked"
    assert [u.username for u in app.extensions["panel_store"].users()] == ["admin", "sam"]
    assert admin.get("/api/status").status_code == 200


def test_login_needs_its_csrf_token(app):
    client = app.test_client()
    client.get("/login")
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"]})
    assert resp.status_code == 400
    assert client.get("/api/status").status_code == 401


def test_login_sets_a_strict_httponly_cookie_and_logout_revokes_it(app, controller):
    client = app.test_client()
    resp = login(client, "sam")
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("eb_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    user = Signed.__new__(Signed)
    user.client, user.csrf = client, CSRF_INPUT.search(client.get("/").get_data(as_text=True)).group(1)
    assert user.post("/logout").status_code == 303
    # the old token is dead on the server, even if a copy of the cookie is replayed
    assert app.extensions["panel_store"].session(token) is None
    replay = app.test_client()
    replay.set_cookie("eb_session", token)
    assert replay.get("/api/status").status_code == 401
    assert [e.type for e in controller.journal.query(types=[ev.LOGIN_SUCCEEDED])] == [ev.LOGIN_SUCCEEDED]


def test_cookie_is_secure_under_https(app):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    resp = client.post("/login", base_url="https://localhost",
                       data={"username": "sam", "password": PASSWORDS["sam"], "csrf_token": token})
    cookie = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("eb_session=")][0]
    assert "Secure" in cookie
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_wrong_password_is_refused_and_journaled(app, controller):
    resp = login(app.test_client(), "sam", "not-the-password")
    assert resp.status_code == 401
    failed = controller.journal.query(types=[ev.LOGIN_FAILED])
    assert len(failed) == 1 and failed[0].data["username"] == "sam"


def login_from(app, address, username, password=None):
    """Sign in through the real form from a given client address."""
    client = app.test_client()
    env = {"REMOTE_ADDR": address}
    page = client.get("/login", environ_base=env)
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    return client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                       "csrf_token": token, "next": "/"}, environ_base=env)


def test_nobody_can_lock_admin_out_from_another_address(app, controller):
    """Finding 4: failures for a username from other devices never refuse its right password elsewhere."""
    limit = app.config["LOGIN_LIMIT_PER_USER_ADDRESS"]
    for i in range(4):                                  # four attacking devices, each up to its pair limit
        for n in range(limit):
            assert login_from(app, f"10.0.0.{i + 1}", "admin", f"guess-{i}-{n}").status_code == 401
    # the attackers are now refused, even with the right password, and that is journaled
    resp = login_from(app, "10.0.0.1", "admin")
    assert resp.status_code == 429 and "Retry-After" in resp.headers
    throttled = controller.journal.query(types=[ev.LOGIN_THROTTLED])
    assert len(throttled) == 1 and throttled[0].data["limits"] == ["user_address"]
    assert throttled[0].data["address"] == "10.0.0.1" and throttled[0].data["username"] == "admin"
    # the real admin at the office PC, which has not failed, signs in
    assert login_from(app, "10.0.0.200", "admin").status_code == 303
    # so does another user from an attacking address (only that pair is throttled there)
    assert login_from(app, "10.0.0.1", "sam").status_code == 303
    assert len(controller.journal.query(types=[ev.LOGIN_FAILED])) == 4 * limit


def test_a_correct_password_forgives_the_pair_but_not_the_address(app):
    limit = app.config["LOGIN_LIMIT_PER_USER_ADDRESS"]
    for n in range(limit - 1):
        assert login_from(app, "10.0.1.1", "sam", f"typo-{n}").status_code == 401
    assert login_from(app, "10.0.1.1", "sam").status_code == 303
    for n in range(limit - 1):                          # the pair count started again
        assert login_from(app, "10.0.1.1", "sam", f"typo-again-{n}").status_code == 401
    assert login_from(app, "10.0.1.1", "sam").status_code == 303


def test_throttle_memory_is_bounded_under_a_spray():
    from web.throttle import LoginThrottle
    t = LoginThrottle(per_user_address=5, per_address=20, max_keys=200)
    for i in range(20_000):
        t.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"user{i}")
        t.should_announce(["address", "user_address"], f"10.0.0.{i % 256}", f"user{i}")
    assert len(t) <= 200 and len(t._announced) <= 200
    # the newest keys are the ones kept, and the oldest were evicted
    assert any(e.username == "user19999" for e in t.entries())
    assert not any(e.username == "user0" for e in t.entries())
    t.failed("10.9.9.9", "x")
    assert len(t) <= 200


def test_admin_sees_and_clears_a_throttle(app, admin, controller):
    limit = app.config["LOGIN_LIMIT_PER_USER_ADDRESS"]
    for n in range(limit):
        assert login_from(app, "10.0.2.7", "sam", f"typo-{n}").status_code == 401
    assert login_from(app, "10.0.2.7", "sam").status_code == 429
    page = admin.get("/admin").get_data(as_text=True)
    assert "10.0.2.7" in page and "blocked" in page
    assert admin.post("/admin/throttles/clear", {"kind": "user_address", "address": "10.0.2.7",
                                                 "username": "sam"}).status_code == 200
    assert login_from(app, "10.0.2.7", "sam").status_code == 303
    assert admin.post("/admin/throttles/clear", {"kind": "user_address", "address": "10.0.2.7",
                                                 "username": "sam"}).status_code == 404
    assert admin.post("/admin/throttles/clear", {"kind": "nope", "address": "x"}).status_code == 400
    assert admin.post("/admin/throttles/clear", {"all": "1"}).status_code == 200
    cleared = [e for e in controller.journal.query(types=[ev.ACCOUNT_CHANGED])
               if e.data["action"] == "clear_throttle"]
    assert len(cleared) == 2
    first = cleared[-1]
    assert first.actor == "Ada Admin" and first.data["actor_username"] == "admin"
    assert first.data["address"] == "10.0.2.7" and first.data["username"] == "sam"


def test_login_is_throttled_per_address(app, controller):
    limit = app.config["LOGIN_LIMIT_PER_ADDRESS"]
    client = app.test_client()
    for i in range(limit):
        assert login(client, f"nobody{i}", "wrong-password").status_code == 401
    assert login(client, "sam").status_code == 429
    assert login(client, "admin").status_code == 429
    throttled = controller.journal.query(types=[ev.LOGIN_THROTTLED])
    assert throttled and "address" in throttled[0].data["limits"]


@pytest.mark.parametrize("path", ["/login", "/", "/history", "/api/status", "/nope"])
def test_security_headers(staff, path):
    resp = staff.get(path)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in resp.headers     # plain HTTP: no HSTS


def test_pages_have_no_inline_script(staff, admin):
    for user, path in ((staff, "/"), (staff, "/history"), (staff, "/sim"), (admin, "/admin")):
        html = user.get(path).get_data(as_text=True)
        for tag in html.split("<script")[1:]:
            assert tag.lstrip().startswith("src="), f"inline script on {path}"
        assert " on" + "click=" not in html
        assert not re.search(r'(src|href)="(https?:)?//', html), f"external asset on {path}"


def test_admin_revokes_a_session(app, admin, staff):
    store = app.extensions["panel_store"]
    sam = [s for s in store.sessions() if s.user.username == "sam"][0]
    assert admin.post(f"/admin/sessions/{sam.id}/revoke").status_code == 200
    assert staff.get("/api/status").status_code == 401
    assert admin.post(f"/admin/sessions/{sam.id}/revoke").status_code == 404


def test_open_redirect_is_refused(app):
    client = app.test_client()
    page = client.get("/login?next=//evil.example/")
    token = CSRF_INPUT.search(page.get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"], "csrf_token": token,
                                       "next": "//evil.example/"})
    assert resp.headers["Location"] == "/"


def test_in_page_sign_in_answers_json_and_replaces_the_old_session(app, controller):
    """The dashboard's sign-in dialog: JSON in and out, same CSRF and throttling rules as the form."""
    client = app.test_client()
    assert login(client, "sam").status_code == 303
    old = client.get_cookie("eb_session").value
    json_headers = {"Accept": "application/json"}
    token = client.get("/login", headers=json_headers).get_json()["login_csrf"]
    resp = client.post("/login", data={"username": "sam", "password": "nope", "csrf_token": token},
                       headers=json_headers)
    assert resp.status_code == 401 and resp.get_json()["error"] == "Wrong username or password."
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"]}, headers=json_headers)
    assert resp.status_code == 400 and "CSRF" in resp.get_json()["error"]          # no token
    token = client.get("/login", headers=json_headers).get_json()["login_csrf"]
    resp = client.post("/login", data={"username": "sam", "password": PASSWORDS["sam"], "csrf_token": token},
                       headers=json_headers)
    body = resp.get_json()
    assert resp.status_code == 200 and body["ok"] and body["username"] == "sam" and body["csrf"]
    assert body["expires_in"] == app.config["SESSION_MAX_HOURS"] * 3600
    assert app.extensions["panel_store"].session(old) is None                      # replaced
    assert client.post("/api/lockdown/start", headers={"X-CSRF-Token": body["csrf"]}).status_code == 200
    for _ in range(app.config["LOGIN_LIMIT_PER_USER_ADDRESS"]):
        token = client.get("/login", headers=json_headers).get_json()["login_csrf"]
        client.post("/login", data={"username": "sam", "password": "x", "csrf_token": token}, headers=json_headers)
    token = client.get("/login", headers=json_headers).get_json()["login_csrf"]
    resp = client.post("/login", data={"username": "sam", "password": "x", "csrf_token": token},
                       headers=json_headers)
    assert resp.status_code == 429 and "Retry-After" in resp.headers and resp.get_json()["ok"] is False
