"""Request security conventions shared by the campus panel and the district board.

Why one implementation: the board promises "the same security conventions as the campus
panel" (issue 15), and two copies of a CSRF check drift apart. Each app describes itself
once in a :class:`Guard` (its cookie names, its sign-in blueprint, its error template, its
elevated role); the rules are here: sessions from an HttpOnly SameSite=Strict cookie, a
CSRF token on every unsafe method (the login form's from its own cookie), roles, the
Content-Security-Policy and other headers, errors in the caller's format, safe redirects
after sign-in, and the throttled sign-in check itself.

Neutral on purpose: this module imports Flask and the standard library only (no controller,
no panel store, no PostgreSQL), so the district board can use it without reaching the
campus panel's parts (tests/test_import_contract.py and the lint-imports contracts pin it).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "media-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SIGN_IN_FIRST = "sign in first (or your session has expired)"
THROTTLED = "Too many failed sign-ins from this device. Wait a few minutes and try again."
WRONG_PASSWORD = "Wrong username or password."


class Throttle(Protocol):
    """web/throttle.py LoginThrottle, as the sign-in check uses it."""
    window: float

    def blocked(self, address: str, username: str) -> list[str]: ...
    def failed(self, address: str, username: str) -> None: ...
    def succeeded(self, address: str, username: str) -> None: ...
    def should_announce(self, kinds: list[str], address: str, username: str) -> bool: ...


@dataclass
class Attempt:
    """One sign-in attempt: ``user`` when the password was right, else the refusal to answer."""
    username: str
    address: str
    user: Any = None
    status: int = 200
    message: str = ""
    retry_after: int | None = None


def set_cookie(resp: BaseResponse, name: str, value: str, max_age: int | None = None) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
                    secure=request.is_secure)


def clear_cookie(resp: BaseResponse, name: str) -> None:
    resp.delete_cookie(name, path="/", httponly=True, samesite="Strict", secure=request.is_secure)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: no open redirect to another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


@dataclass(frozen=True)
class Guard:
    """One app's names for the shared rules. ``auth`` is the sign-in blueprint (its ``login``
    and ``login_post`` endpoints); ``elevated`` the role ``require(elevated)`` asks for, checked
    with ``is_elevated(user)``."""
    session_cookie: str
    login_csrf_cookie: str
    auth: str
    error_template: str
    login_template: str
    json_paths: tuple[str, ...]
    store_key: str                      # app.extensions key of the account/session store
    session_attr: str                   # flask.g attribute holding this request's session
    default_role: str
    elevated: str
    is_elevated: Callable[[Any], bool]
    permissions_policy: str
    lookup_static: bool = True          # the board skips the session lookup for its static files
    keep_cookie_on_failed_lookup: bool = False   # the board: a database outage signs nobody out

    # ------------------------------------------------------------------ requests
    def store(self) -> Any:
        return current_app.extensions[self.store_key]

    def current_session(self) -> Any:
        return g.get(self.session_attr)

    def wants_json(self) -> bool:
        """API-style callers (fetch, EventSource, CSV) get JSON errors; browsers navigating get pages."""
        if request.path.startswith(self.json_paths):
            return True
        return request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"

    def error(self, status: int, message: str, **extra: Any) -> Response:
        """A clear error in the caller's format. Never a stack trace."""
        if self.wants_json():
            resp = jsonify(ok=False, error=message, status=status, **extra)
        else:
            resp = Response(render_template(self.error_template, status=status, message=message),
                            mimetype="text/html")
        resp.status_code = status
        return resp

    def require(self, role: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Signed-in users only; ``role=elevated`` for the elevated role (403 for others).
        Anonymous or expired: 401, or the sign-in page for a browser's GET."""
        role = role or self.default_role

        def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
            @wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                sess = self.current_session()
                if sess is None:
                    if request.method == "GET" and not self.wants_json():
                        return redirect(url_for(f"{self.auth}.login", next=request.full_path.rstrip("?")))
                    return self.error(401, SIGN_IN_FIRST)
                if role == self.elevated and not self.is_elevated(sess.user):
                    return self.error(403, f"this needs an {self.elevated} account")
                return view(*args, **kwargs)
            return wrapper
        return decorate

    def _load_session(self) -> Response | None:
        if not self.lookup_static and request.endpoint == "static":
            return None
        setattr(g, self.session_attr, self.store().session(request.cookies.get(self.session_cookie)))
        g.session_checked = True        # the lookup answered (a failed one must not clear the cookie)
        if request.method in UNSAFE_METHODS:
            return self._check_csrf()
        return None

    def _check_csrf(self) -> Response | None:
        sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
        if request.endpoint == f"{self.auth}.login_post":
            expected = request.cookies.get(self.login_csrf_cookie, "")
        else:
            sess = self.current_session()
            if sess is None:
                return self.error(401, SIGN_IN_FIRST)
            expected = sess.csrf
        if not expected or not sent or not hmac.compare_digest(str(sent).encode(), str(expected).encode()):
            return self.error(400, "missing or wrong CSRF token; reload the page and try again")
        return None

    def _headers(self, resp: Response) -> Response:
        h = resp.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Permissions-Policy", self.permissions_policy)
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if request.is_secure:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if not request.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")
        looked_up = g.get("session_checked") or not self.keep_cookie_on_failed_lookup
        if looked_up and g.get(self.session_attr) is None and request.cookies.get(self.session_cookie) and \
                request.endpoint != f"{self.auth}.login_post":
            clear_cookie(resp, self.session_cookie)      # expired or revoked: drop the stale cookie
        return resp

    def _http_error(self, exc: HTTPException) -> Response:
        return self.error(exc.code or 400, exc.description or exc.name)

    def init_app(self, app: Flask, **template_globals: Callable[[], Any]) -> None:
        """Session and CSRF before each request, headers after it, HTTP errors in the caller's
        format; the app registers its own handlers for its storage and unexpected errors.
        ``template_globals``: more names for templates, each computed per render."""
        app.before_request(self._load_session)
        app.after_request(self._headers)
        app.register_error_handler(HTTPException, self._http_error)

        @app.context_processor
        def _template_globals() -> dict[str, Any]:
            sess = self.current_session()
            return {"session": sess, "user": sess.user if sess else None, "csrf_token": sess.csrf if sess else "",
                    **{name: compute() for name, compute in template_globals.items()}}

    # ------------------------------------------------------------------ sign-in
    def login_form(self, status: int = 200, message: str = "", username: str = "") -> BaseResponse:
        """The sign-in page with a fresh login CSRF token in its own cookie (no session yet)."""
        token = new_login_csrf()
        resp = make_response(render_template(self.login_template, message=message, login_csrf=token,
                                             username=username, next=safe_next(request.args.get("next"))), status)
        set_cookie(resp, self.login_csrf_cookie, token, max_age=3600)
        return resp

    def check_sign_in(self, throttle: Throttle, authenticate: Callable[[str, str], Any],
                      audit: Callable[..., None], max_password: int | None = None) -> Attempt:
        """The sign-in form's credentials, checked under the throttle (per address and per
        (username, address), web/throttle.py). ``audit(action, username=..., address=..., ...)``
        records 'login_throttled' (once per window) and 'login_failed'; the caller records success."""
        username = request.form.get("username", "")[:64].strip().lower()
        password = request.form.get("password", "")[:max_password]
        attempt = Attempt(username, request.remote_addr or "unknown")
        blocked = throttle.blocked(attempt.address, username)
        if blocked:
            if throttle.should_announce(blocked, attempt.address, username):
                audit("login_throttled", username=username, address=attempt.address, limits=blocked)
            attempt.status, attempt.message, attempt.retry_after = 429, THROTTLED, int(throttle.window)
            return attempt
        attempt.user = authenticate(username, password)
        if attempt.user is None:
            throttle.failed(attempt.address, username)
            audit("login_failed", username=username, address=attempt.address)
            attempt.status, attempt.message = 401, WRONG_PASSWORD
            return attempt
        throttle.succeeded(attempt.address, username)
        return attempt

    def signed_in(self, resp: BaseResponse, token: str) -> BaseResponse:
        """The new session's cookie set, the login CSRF cookie dropped."""
        set_cookie(resp, self.session_cookie, token)
        clear_cookie(resp, self.login_csrf_cookie)
        return resp

    def sign_out(self) -> BaseResponse:
        self.store().end_session(request.cookies.get(self.session_cookie))
        resp = redirect("/login", 303)
        clear_cookie(resp, self.session_cookie)
        return resp
