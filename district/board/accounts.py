"""Board accounts, server-side sessions and the audit trail, in PostgreSQL.

Why PostgreSQL and not the panel's SQLite file: the board is stateless so several
instances can run behind one nginx (docs/district.md); a session created by one must be
valid on the next. The rules are the campus panel's (web/store.py, web/policy.py):
scrypt password hashes, zxcvbn strength, one-script display names, random session
tokens of which only the SHA-256 is stored, idle and absolute session lifetimes.
Roles: ``viewer`` (watch, search, export) and ``operator`` (also lockdowns).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from district import SCHEMA_SQL
from web import policy
from web.store import (
    SCRYPT_N,
    StoreError,
    check_display_name,
    check_password,
    check_username,
    hash_password,
    matching_account,
)

ROLES = ("viewer", "operator")
POLICY_ROLE = {"viewer": "staff", "operator": "admin"}   # operators can lock every campus: admin strength
TOUCH_EVERY_SECONDS = 15.0


AccountError = StoreError       # the panel's: a refused account change, the message names the field

@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class Session:
    id: str
    user: User
    csrf: str
    created: float
    last_seen: float


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def apply_schema(pool: ConnectionPool) -> None:
    """The district schema (district/schema.sql, the recorder's) and the board's additions,
    serialised by an advisory lock so board and recorder instances starting together do not race."""
    board_sql = resources.files("district.board").joinpath("schema.sql").read_text(encoding="utf-8")
    with pool.connection() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('district_schema'))")
        conn.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
        conn.execute(board_sql)


class BoardStore:
    """Accounts, sessions and audit rows; every method is one short transaction from the pool."""

    def __init__(self, pool: ConnectionPool, idle_seconds: float = 1800.0, max_seconds: float = 12 * 3600.0,
                 scrypt_n: int = SCRYPT_N, now: Callable[[], float] = time.time):
        self.pool = pool
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.scrypt_n = scrypt_n
        self.now = now

    # ------------------------------------------------------------------ users
    def add_user(self, username: str, password: str, role: str, display_name: str | None = None) -> User:
        username = check_username(username)
        if role not in ROLES:
            raise AccountError(f"role: use one of {', '.join(ROLES)}")
        display = check_display_name(display_name or username)
        check_password(password, POLICY_ROLE[role], (username, display))
        key = policy.name_key(display)
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT username, display_name FROM board_users").fetchall()
            for other, other_display in rows:
                if other == username:
                    raise AccountError(f"username: {username!r} already exists")
                if policy.name_key(other_display) == key:
                    raise AccountError(f"display name: {display!r} is already used by {other!r}")
            conn.execute("INSERT INTO board_users (username, display_name, role, password_hash) VALUES (%s,%s,%s,%s)",
                         (username, display, role, hash_password(password, self.scrypt_n)))
        return User(username, display, role)

    def set_password(self, username: str, password: str) -> None:
        user = self.user(username)
        if user is None:
            raise AccountError(f"username: no account {username!r}")
        check_password(password, POLICY_ROLE[user.role], (user.username, user.display_name))
        with self.pool.connection() as conn:
            conn.execute("UPDATE board_users SET password_hash = %s WHERE username = %s",
                         (hash_password(password, self.scrypt_n), username))
            conn.execute("DELETE FROM board_sessions WHERE username = %s", (username,))

    def remove_user(self, username: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM board_users WHERE username = %s", (username,)).rowcount > 0

    def users(self) -> list[User]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT username, display_name, role FROM board_users ORDER BY username").fetchall()
        return [User(*r) for r in rows]

    def user(self, username: str) -> User | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT username, display_name, role FROM board_users WHERE username = %s",
                               (username,)).fetchone()
        return User(*row) if row else None

    def authenticate(self, username: str, password: str) -> User | None:
        """The user for a correct password; the same scrypt cost either way (no user-exists oracle:
        the panel's dummy hash has the production cost)."""
        with self.pool.connection() as conn:
            row = conn.execute("SELECT username, display_name, role, password_hash"
                               " FROM board_users WHERE username = %s",
                               (username,)).fetchone()
        found = matching_account(password, row)
        return User(*found) if found else None

    # --------------------------------------------------------------- sessions
    def create_session(self, user: User, address: str, agent: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        sid, csrf, now = secrets.token_urlsafe(9), secrets.token_urlsafe(24), self.now()
        with self.pool.connection() as conn:
            conn.execute("DELETE FROM board_sessions WHERE last_seen < %s OR created < %s",
                         (now - self.idle_seconds, now - self.max_seconds))
            conn.execute("INSERT INTO board_sessions VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                         (_hash(token), sid, user.username, csrf, now, now, address[:64], agent[:200]))
        return token, Session(sid, user, csrf, now, now)

    def session(self, token: str | None, touch: bool = True) -> Session | None:
        if not token or len(token) > 200:
            return None
        now = self.now()
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT s.id, u.username, u.display_name, u.role, s.csrf, s.created, s.last_seen "
                "FROM board_sessions s JOIN board_users u ON u.username = s.username WHERE s.token_hash = %s",
                (_hash(token),)).fetchone()
            if row is None:
                return None
            sid, username, display, role, csrf, created, last_seen = row
            if now - last_seen > self.idle_seconds or now - created > self.max_seconds or last_seen > now + 5:
                conn.execute("DELETE FROM board_sessions WHERE token_hash = %s", (_hash(token),))
                return None
            if touch and now - last_seen > min(TOUCH_EVERY_SECONDS, self.idle_seconds / 4):
                conn.execute("UPDATE board_sessions SET last_seen = %s WHERE token_hash = %s", (now, _hash(token)))
                last_seen = now
        return Session(sid, User(username, display, role), csrf, created, last_seen)

    def end_session(self, token: str | None) -> None:
        if token and len(token) <= 200:
            with self.pool.connection() as conn:
                conn.execute("DELETE FROM board_sessions WHERE token_hash = %s", (_hash(token),))

    # ------------------------------------------------------------------ audit
    def audit(self, username: str, action: str, campus: str | None = None, address: str = "",
              **detail: Any) -> int:
        """One row in the district ``audit`` table (district/schema.sql); returns its id."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO audit (username, action, campus, address, detail) VALUES (%s,%s,%s,%s,%s) RETURNING id",
                (username[:64], action, campus, address[:64], Jsonb(detail))).fetchone()
        return int(row[0]) if row else 0

    def audit_update(self, audit_id: int, **detail: Any) -> None:
        """Adds to (or replaces keys of) an audit row's detail: a lockdown's outcome, once known."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE audit SET detail = detail || %s WHERE id = %s", (Jsonb(detail), audit_id))

    def audit_rows(self, limit: int = 50, action: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, at, username, action, campus, address, detail FROM audit"
        params: list[Any] = []
        if action:
            sql += " WHERE action = %s"
            params.append(action)
        sql += " ORDER BY id DESC LIMIT %s"
        params.append(limit)
        with self.pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        keys = ("id", "at", "username", "action", "campus", "address", "detail")
        return [dict(zip(keys, r, strict=False)) for r in rows]
