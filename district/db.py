"""PostgreSQL access shared by the recorder and the board: connect and apply the schema."""

from __future__ import annotations

from typing import Any

import psycopg

from district import SCHEMA_SQL


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, **kwargs)


def apply_schema(dsn: str) -> None:
    """Creates or completes the schema (every statement is idempotent). Serialised by an
    advisory lock so two instances starting together do not race on CREATE."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('district_schema'))")
            conn.execute(SCHEMA_SQL.read_text())


def add_campuses(dsn: str, campuses: tuple[str, ...]) -> None:
    if not campuses:
        return
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO campuses (campus) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                      (list(campuses),))
