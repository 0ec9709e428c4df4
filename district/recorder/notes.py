"""The recorder's NOTIFY to the board: which doors changed, or "*" when that would not fit.

PostgreSQL refuses a NOTIFY payload of 8000 bytes or more, and a refused NOTIFY aborts the
transaction it is in. Door names may be 63 + 63 characters (docs/mqtt.md), so a list of a few
dozen long names, or of hundreds of short ones (a gap scan after a broker outage: every door
behind at once), would roll back the very commit it announces, again on every retry. Above
``MAX_NOTE_BYTES`` the note says "*" and the board rebuilds the whole grid, which is what it
does for that many doors anyway.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

CHANNEL = "district"
MAX_NOTE_BYTES = 7000          # PostgreSQL's limit is 8000; room for the key and escaping


def note(key: str, names: Iterable[str]) -> str:
    """``{key: [names...]}`` in JSON, or ``{"doors": "*"}`` when it would be too long."""
    text = json.dumps({key: sorted(set(names))})
    if len(text.encode()) > MAX_NOTE_BYTES:
        return json.dumps({"doors": "*"})
    return text


def notify(conn: Any, key: str, names: Iterable[str]) -> None:
    """NOTIFY the board inside the caller's transaction (delivered when it commits)."""
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, note(key, names)))
