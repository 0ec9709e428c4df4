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
from typing import Callable

PANEL_DB = "panel.sqlite3"
ROLES = ("staff", "admin")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 10
MAX_PASSWORD = 256
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
TOUCH_EVERY_SECONDS = 15.0   # idle-timeout bookkeeping without a write on every request

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
"""


class StoreError(ValueError):
    """A refused account change; the message is safe to show to the operator."""


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    id: str              # public id (admin listing, revocation); never the token
    user: User
    csrf: str
    created: float
    last_seen: float
    address: str
    agent: str


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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise StoreError("username: use 1-32 lowercase letters, digits, '.', '_' or '-'")
    return username


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise StoreError(f"password: use {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_display_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 60 or not name.isprintable():
        raise StoreError("display name: use 1-60 printable characters")
    return name.strip()


def check_role(role: object) -> str:
    if role not in ROLES:
        raise StoreError(f"role: use one of {', '.join(ROLES)}")
    return str(role)


class PanelStore:
    """Accounts and sessions. Thread-safe (one connection, one lock); ``now`` is injectable."""

    def __init__(self, path: str | Path, idle_minutes: float = 30.0,
                 now: Callable[[], float] = time.time, scrypt_n: int = SCRYPT_N):
        self.path = Path(path)
        self.scrypt_n = scrypt_n     # tests lower the cost to stay fast; production keeps 2**14
        self.idle_seconds = idle_minutes * 60.0
        self.now = now
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

    # ------------------------------------------------------------ users
    def add_user(self, username: str, password: str, role: str = "staff",
                 display_name: str | None = None) -> User:
        username = check_username(username)
        check_password(password)
        role = check_role(role)
        display = check_display_name(display_name if display_name else username)
        pw_hash = hash_password(password, self.scrypt_n)
        with self._lock:
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
            raise StoreError(f"no user {username!r}")

    def set_password(self, username: str, password: str) -> None:
        """Change a password and end every session of that user."""
        check_password(password)
        pw_hash = hash_password(password, self.scrypt_n)
        with self._lock:
            cur = self._db.execute("UPDATE users SET pw_hash = ? WHERE username = ?", (pw_hash, str(username)))
            if cur.rowcount == 0:
                raise StoreError(f"no user {username!r}")
            self._db.execute("DELETE FROM sessions WHERE username = ?", (str(username),))

    def set_role(self, username: str, role: str) -> None:
        role = check_role(role)
        with self._lock:
            if role != "admin":
                self._guard_last_admin(username, removing=True)
            cur = self._db.execute("UPDATE users SET role = ? WHERE username = ?", (role, str(username)))
        if cur.rowcount == 0:
            raise StoreError(f"no user {username!r}")

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
        if row is None:
            verify_password(password, _DUMMY_HASH)
            return None
        return User(row[0], row[1], row[2]) if verify_password(password, row[3]) else None

    # ------------------------------------------------------------ sessions
    def create_session(self, user: User, address: str, agent: str) -> tuple[str, Session]:
        """Returns (token for the cookie, session). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        sid = secrets.token_hex(8)
        csrf = secrets.token_urlsafe(32)
        now = self.now()
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?)",
                             (_token_hash(token), sid, user.username, csrf, now, now,
                              address[:64], agent[:200]))
        return token, Session(sid, user, csrf, now, now, address[:64], agent[:200])

    def session(self, token: object, touch: bool = True) -> Session | None:
        """The live session for a cookie token, or None (unknown, revoked or idle too long)."""
        if not isinstance(token, str) or not 10 <= len(token) <= 100:
            return None
        key = _token_hash(token)
        now = self.now()
        with self._lock:
            row = self._db.execute(
                "SELECT s.id, u.username, u.display_name, u.role, s.csrf, s.created, s.last_seen, "
                "s.address, s.agent FROM sessions s JOIN users u ON u.username = s.username "
                "WHERE s.token_hash = ?", (key,)).fetchone()
            if row is None:
                return None
            if now - row[6] > self.idle_seconds:
                try:
                    self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (key,))
                except sqlite3.OperationalError:
                    pass    # expired either way; the row goes at the next chance
                return None
            last_seen = row[6]
            if touch and now - last_seen >= TOUCH_EVERY_SECONDS:
                try:
                    self._db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, key))
                    last_seen = now
                except sqlite3.OperationalError:
                    pass    # a full disk: idle-time bookkeeping waits; the signed-in user keeps working
        return Session(row[0], User(row[1], row[2], row[3]), row[4], row[5], last_seen, row[7], row[8])

    def end_session(self, token: object) -> None:
        if isinstance(token, str):
            with self._lock:
                self._db.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def revoke(self, session_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM sessions WHERE id = ?", (str(session_id),))
        return cur.rowcount > 0

    def sessions(self) -> list[Session]:
        """Live sessions (idle ones are purged first), newest activity first."""
        cutoff = self.now() - self.idle_seconds
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE last_seen < ?", (cutoff,))
            rows = self._db.execute(
                "SELECT s.id, u.username, u.display_name, u.role, s.csrf, s.created, s.last_seen, "
                "s.address, s.agent FROM sessions s JOIN users u ON u.username = s.username "
                "ORDER BY s.last_seen DESC").fetchall()
        return [Session(r[0], User(r[1], r[2], r[3]), r[4], r[5], r[6], r[7], r[8]) for r in rows]


def generate_password() -> str:
    """A readable random password (about 100 bits) for first-run admin accounts."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))
