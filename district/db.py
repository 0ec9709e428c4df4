"""PostgreSQL access shared by the recorder and the board: connect and apply the schema."""

from __future__ import annotations

from typing import Any

import psycopg

from district import SCHEMA_SQL, SCHEMA_VERSION


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, **kwargs)


def schema_version(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT to_regclass('schema_info')").fetchone()
    if row is None or row[0] is None:
        return None
    row = conn.execute("SELECT value FROM schema_info WHERE key = 'version'").fetchone()
    return row[0] if row else None


def apply_schema(dsn: str) -> bool:
    """Creates or completes the schema when its recorded version is not this code's; returns
    whether it ran. Skipped when current: its DDL takes table locks that would stall (or
    deadlock with) recorder instances already writing. Serialised by an advisory lock so
    instances starting together do not race on CREATE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if schema_version(conn) == SCHEMA_VERSION:
            return False
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('district_schema'))")
            if schema_version(conn) == SCHEMA_VERSION:
                return False
            conn.execute(SCHEMA_SQL.read_text())
    return True


def add_campuses(dsn: str, campuses: tuple[str, ...]) -> None:
    if not campuses:
        return
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO campuses (campus) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                      (list(campuses),))
