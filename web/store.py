"""Staff accounts and server-side sessions for the panel, in their own SQLite file.

Why a separate file (``panel.sqlite3`` beside the journal): accounts and
sessions change often and are not events; keeping them out of the journal keeps
the journal an append-only audit log and MQTT outbox.

Passwords are hashed with scrypt (stdlib). Session tokens are random and only
their SHA-256 is stored, so a copy of this file cannot be used to sign in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from controller.vocabulary import Role

from . import policy

PANEL_DB = "panel.sqlite3"
ROLES = tuple(Role)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = policy.MIN_LENGTH["staff"]
MAX_PASSWORD = policy.MAX_LENGTH
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
TOUCH_EVERY_SECONDS = 15.0   # the listing's last-seen is written at most this often
CLOCK_SLACK_SECONDS = 5.0    # stored session times this far in the future mean the clock went back
SESSION_SELECT = ("SELECT s.token_hash, s.id, u.username, u.display_name, u.role, s.csrf, s.created, "
                  "s.last_seen, s.address, s.agent FROM sessions s JOIN users u ON u.username = s.username ")

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username     TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL,
    pw_hash      TEXT NOT NULL,
    created      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created    REAL NOT NULL,
    last_seen  REAL NOT NULL,
    address    TEXT NOT NULL,
    agent      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS missed_acks (
    request_id TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    at         REAL NOT NULL
);
"""
MISSED_ACKS_KEPT = 500      # the dashboard lists only the newest missed rings; older acks can go


class StoreError(ValueError):
    """A refused account change; the message is safe to show to the operator."""


class NoSuchUser(StoreError):
    """The account named does not exist (the admin page answers 404)."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class Session:
    id: str              # public id (admin listing, revocation); never the token
    user: User
    csrf: str
    created: float
    last_seen: float
    address: str
    agent: str
    expires_in: float = 0.0  # seconds until the absolute lifetime ends (web.session_max_hours)


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """scrypt with a random salt; the cost is stored in the hash so it can be raised later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def matching_account(password: str, row: Sequence[Any] | None) -> tuple[str, str, str] | None:
    """(username, display name, role) of an account row ``(username, display_name, role, hash)``
    when ``password`` matches its hash. With no row, a dummy hash of the production cost is
    checked instead, so an unknown username costs what a known one does (no user-exists
    oracle). Shared with the district board's accounts."""
    if row is None:
        verify_password(password, _DUMMY_HASH)
        return None
    return (row[0], row[1], row[2]) if verify_password(password, row[3]) else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise StoreError("username: use 1-32 lowercase letters, digits, '.', '_' or '-'")
    return username


def check_password(password: object, role: str = "staff", names: tuple[str, ...] = ()) -> str:
    """Long and strong enough for the role (web.policy: zxcvbn, stricter for admins)."""
    try:
        return policy.check_password(password, role, names)
    except policy.PolicyError as exc:
        raise StoreError(str(exc)) from None


def check_display_name(name: object) -> str:
    try:
        return policy.check_display_name(name)
    except policy.PolicyError as exc:
        raise StoreError(str(exc)) from None


def check_role(role: object) -> str:
    if role not in ROLES:
        raise StoreError(f"role: use one of {', '.join(ROLES)}")
    return str(role)


class PanelStore:
    """Accounts and sessions. Thread-safe (one connection, one lock).

    ``now`` (wall clock: stored, shown) and ``clock`` (monotonic: every timeout) are injectable.
    """

    def __init__(self, path: str | Path, idle_minutes: float = 30.0,
                 now: Callable[[], float] = time.time, scrypt_n: int = SCRYPT_N,
                 max_hours: float = 12.0, clock: Callable[[], float] = time.monotonic,
                 idle_seconds: float | None = None):
        self.path = Path(path)
        self.scrypt_n = scrypt_n     # tests lower the cost to stay fast; production keeps 2**14
        self.idle_seconds = idle_seconds if idle_seconds is not None else idle_minutes * 60.0
        self.max_seconds = max_hours * 3600.0
        self.now = now
        self.clock = clock
        self._live: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        try:
            self.path.chmod(0o600)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------ missed rings
    def ack_missed(self, request_id: str, username: str) -> None:
        """Staff saw a missed (expired) ring: it leaves the dashboard's Missed list everywhere."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO missed_acks VALUES (?,?,?)", (request_id, username, self.now()))
            self._db.execute("DELETE FROM missed_acks WHERE request_id NOT IN (SELECT request_id FROM "
                             "missed_acks ORDER BY at DESC LIMIT ?)", (MISSED_ACKS_KEPT,))

    def missed_acked(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT request_id FROM missed_acks")}

    # ------------------------------------------------------------ users
    def add_user(self, username: str, password: str, role: str = "staff",
                 display_name: str | None = None) -> User:
        username = check_username(username)
        role = check_role(role)
        display = check_display_name(display_name if display_name else username)
        check_password(password, role, (username, display))
        pw_hash = hash_password(password, self.scrypt_n)
        with self._lock:
            self._guard_unique_name(username, display)
            try:
                self._db.execute("INSERT INTO users VALUES (?,?,?,?,?)",
                                 (username, display, role, pw_hash, self.now()))
            except sqlite3.IntegrityError:
                raise StoreError(f"user {username!r} already exists") from None
        return User(username, display, role)

    def users(self) -> list[User]:
        with self._lock:
            rows = self._db.execute(
                "SELECT username, display_name, role FROM users ORDER BY username").fetchall()
        return [User(*r) for r in rows]

    def get_user(self, username: str) -> User | None:
        with self._lock:
            row = self._db.execute("SELECT username, display_name, role FROM users WHERE username = ?",
                                   (str(username),)).fetchone()
        return User(*row) if row else None

    def remove_user(self, username: str) -> None:
        with self._lock:
            self._guard_last_admin(username, removing=True)
            cur = self._db.execute("DELETE FROM users WHERE username = ?", (str(username),))
        if cur.rowcount == 0:
            raise NoSuchUser(f"no user {username!r}")

    def set_password(self, username: str, password: str) -> None:
        """Change a password and end every session of that user."""
        user = self.get_user(username)
        if user is None:
            raise NoSuchUser(f"no user {username!r}")
        check_password(password, user.role, (user.username, user.display_name))
        pw_hash = hash_password(password, self.scrypt_n)
        with self._lock:
            cur = self._db.execute("UPDATE users SET pw_hash = ? WHERE username = ?", (pw_hash, str(username)))
            if cur.rowcount == 0:
                raise NoSuchUser(f"no user {username!r}")
            self._db.execute("DELETE FROM sessions WHERE username = ?", (str(username),))

    def set_role(self, username: str, role: str) -> None:
        role = check_role(role)
        with self._lock:
            if role != Role.ADMIN:
                self._guard_last_admin(username, removing=True)
            cur = self._db.execute("UPDATE users SET role = ? WHERE username = ?", (role, str(username)))
        if cur.rowcount == 0:
            raise NoSuchUser(f"no user {username!r}")

    def _guard_unique_name(self, username: str, display: str) -> None:
        """No two accounts show the same name, look-alikes included (caller holds the lock)."""
        key = policy.name_key(display)
        for other, other_display in self._db.execute("SELECT username, display_name FROM users"):
            if other != username and key in (policy.name_key(other_display), policy.name_key(other)):
                raise StoreError(f"display name: {display!r} is already used by, or looks like, "
                                 f"another account's name ({other}); choose a distinct one")

    def _guard_last_admin(self, username: str, removing: bool) -> None:
        row = self._db.execute("SELECT role FROM users WHERE username = ?", (str(username),)).fetchone()
        if row and row[0] == "admin" and removing:
            admins = self._db.execute("SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0]
            if admins <= 1:
                raise StoreError("refused: this is the last admin account")

    def authenticate(self, username: object, password: object) -> User | None:
        """The user for a correct password, else None. Same work for unknown users (no timing oracle)."""
        if not isinstance(username, str) or not isinstance(password, str) or len(password) > MAX_PASSWORD:
            verify_password("x", _DUMMY_HASH)
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT username, display_name, role, pw_hash FROM users WHERE username = ?",
                (username,)).fetchone()
        found = matching_account(password, row)
        return User(*found) if found else None

    # ------------------------------------------------------------ sessions
    # Timing runs on a monotonic clock held in memory (``_live``: token hash -> [born, seen,
    # written]), so stepping the wall clock back or forward neither extends nor cuts a session.
    # The wall-clock columns are for the admin listing and for sessions that outlive a restart;
    # those are resumed from the wall clock once, and ended if their times lie in the future
    # (the clock was stepped back while the daemon was down: fail closed, signing in is cheap).

    def create_session(self, user: User, address: str, agent: str) -> tuple[str, Session]:
        """Returns (token for the cookie, session). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        sid = secrets.token_hex(8)
        csrf = secrets.token_urlsafe(32)
        now, mono = self.now(), self.clock()
        key = _token_hash(token)
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                             (key, sid, user.username, csrf, now, now, address[:64], agent[:200]))
            self._live[key] = [mono, mono, mono]
        return token, Session(sid, user, csrf, now, now, address[:64], agent[:200], self.max_seconds)

    def _check(self, row: tuple, key: str, now: float, mono: float, touch: bool) -> Session | None:
        """The session for a row if it is still live (caller holds the lock); ends it if not."""
        live = self._live.get(key)
        if live is None:                      # first sight since start-up: resume from the wall clock
            created, last_seen = row[5], row[6]
            if created > now + CLOCK_SLACK_SECONDS or last_seen > now + CLOCK_SLACK_SECONDS:
                live = None
            else:
                live = [mono - max(0.0, now - created), mono - max(0.0, now - last_seen), mono]
        if live is None or mono - live[1] > self.idle_seconds or mono - live[0] > self.max_seconds:
            try:
                self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
            except sqlite3.OperationalError:
                pass    # ended either way; the row goes at the next chance (e.g. a full disk)
            self._live.pop(key, None)
            return None
        self._live[key] = live
        last_seen = row[6]
        if touch:
            live[1] = mono
            if mono - live[2] >= TOUCH_EVERY_SECONDS:      # the listing's copy, without a write per request
                try:
                    self._db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?",
                                     (max(now, row[5]), key))
                    last_seen = max(now, row[5])
                except sqlite3.OperationalError:
                    pass    # a full disk: the listing's copy waits; the signed-in user keeps working
                live[2] = mono
        return Session(row[0], User(row[1], row[2], row[3]), row[4], row[5], last_seen, row[7], row[8],
                       max(0.0, self.max_seconds - (mono - live[0])))

    def session(self, token: object, touch: bool = True) -> Session | None:
        """The live session for a cookie token, or None (unknown, revoked, idle too long, too old).

        ``touch`` counts this as activity (a request, or an open live stream's heartbeat).
        """
        if not isinstance(token, str) or not 10 <= len(token) <= 100:
            return None
        key = _token_hash(token)
        now, mono = self.now(), self.clock()
        with self._lock:
            row = self._db.execute(SESSION_SELECT + "WHERE s.token_hash = ?", (key,)).fetchone()
            if row is None:
                self._live.pop(key, None)
                return None
            return self._check(row[1:], key, now, mono, touch)

    def end_session(self, token: object) -> None:
        if isinstance(token, str):
            key = _token_hash(token)
            with self._lock:
                self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
                self._live.pop(key, None)

    def revoke(self, session_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM sessions WHERE id = ?", (str(session_id),))
        return cur.rowcount > 0

    def sessions(self) -> list[Session]:
        """Live sessions (idle and too old ones are ended first), newest activity first."""
        now, mono = self.now(), self.clock()
        with self._lock:
            rows = self._db.execute(SESSION_SELECT + "ORDER BY s.last_seen DESC").fetchall()
            alive = [self._check(r[1:], r[0], now, mono, touch=False) for r in rows]
            keys = {r[0] for r in rows}
            for key in [k for k in self._live if k not in keys]:     # ended by another process
                del self._live[key]
        return [s for s in alive if s is not None]


def generate_password() -> str:
    """A readable random password (about 100 bits) for first-run admin accounts."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))
