"""The grid: every campus and door in one query, shaped for the page and the live stream.

Read from the recorder's tables (district/schema.sql): ``doors`` (availability and the
latest retained state), ``events`` (when the pending ring was pressed) and ``gaps`` (holes
in a door's feed). The board never asks a campus: what it shows is what the district
database holds, so every screen and every instance shows the same thing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

from psycopg_pool import ConnectionPool

from controller import labels

from .config import BoardSettings

GRID_SQL = """
SELECT c.campus, c.name, c.panel_url, d.door, d.online, d.status_at, d.last_seen, d.state, d.state_at,
       r.since, g.open_gaps, g.missing, c.bridge_online, c.bridge_at
  FROM campuses c
  LEFT JOIN doors d ON d.campus = c.campus
  LEFT JOIN LATERAL (SELECT min(e.ts) AS since FROM events e
                      WHERE e.request_id = d.state->>'ringing' AND e.campus = d.campus AND e.door = d.door
                        AND e.type = 'buzzer_pressed') r ON true
  LEFT JOIN LATERAL (SELECT count(*) AS open_gaps, coalesce(sum(x.missing), 0) AS missing FROM gaps x
                      WHERE x.campus = d.campus AND x.door = d.door AND x.closed_at IS NULL) g ON true
 {where}
 ORDER BY c.campus, d.door
"""
# Only the doors a notification named: the grid is patched, not rebuilt, per burst of changes.
DOORS_WHERE = "WHERE (d.campus, d.door) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"

# Alarms the district must see at once; anything else in state.alarms is shown too, in words.
ALARM_WORDS = {"forced_open": "forced open", "held_open": "held open", "panic": "panic",
               "journal_failure": "journal fault", "journal_lost": "journal lost", "disk_full": "disk full",
               "tamper": "tamper", "outbox_backlog": "events waiting"}


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if t else None


def safe_url(url: str | None) -> str:
    """Only http(s) links reach a page: a campus row written by anyone else must not become a
    ``javascript:`` link (the CSP would block it too; this keeps the grid honest)."""
    if not url:
        return ""
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else ""


def _alarm_words(name: str) -> str:
    return ALARM_WORDS.get(name) or labels.alarm(name)


def lockdown_level(state: dict[str, Any]) -> str | None:
    """'lockdown' (or the level the campus names, e.g. 'secure') when active, else None."""
    lock = state.get("lockdown")
    if not lock:
        return None
    level = lock.get("level") if isinstance(lock, dict) else None
    return str(level) if isinstance(level, str) and level else "lockdown"


def door_entry(row: tuple[Any, ...], now: datetime, alert_after: float) -> dict[str, Any]:
    (_c, _n, _u, door, online, status_at, last_seen, state, state_at, since, open_gaps, missing) = row[:12]
    state = state if isinstance(state, dict) else {}
    ringing = state.get("ringing")
    ring = None
    if ringing:
        start = since or state_at
        age = max(0.0, (now - start).total_seconds()) if start else 0.0
        ring = {"request_id": str(ringing), "since": _iso(start), "age": round(age, 1), "overdue": age > alert_after}
    alarms = [a for a in (state.get("alarms") or []) if isinstance(a, str)]
    if state.get("panic") and "panic" not in alarms:
        alarms.append("panic")
    if open_gaps:
        alarms.append("gap")
    words = [_alarm_words(a) for a in alarms if a != "gap"]
    if open_gaps:
        words.append(f"gap: {int(missing)} event{'s' if int(missing) != 1 else ''} missing")
    if state.get("fault"):
        words.append(f"fault: {str(state['fault'])[:80]}")
    return {"door": door, "online": bool(online), "last_seen": _iso(last_seen), "status_at": _iso(status_at),
            "state": state.get("door") or "unknown", "ring": ring, "alarms": alarms, "alarm_words": words,
            "lockdown": lockdown_level(state), "fault": state.get("fault")}


def build(pool: ConnectionPool, settings: BoardSettings, now: Callable[[], datetime],
          doors: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The grid as plain JSON-able data, in one query: every campus and door, or with ``doors``
    only those doors (their campuses carry just them: ``patch`` merges them into a full grid)."""
    sql, params = GRID_SQL.format(where=""), None
    if doors is not None:
        keys = sorted(doors)
        sql, params = GRID_SQL.format(where=DOORS_WHERE), ([k[0] for k in keys], [k[1] for k in keys])
    with pool.connection() as conn:
        rows = conn.execute(sql, params).fetchall()
    t = now()
    campuses: dict[str, dict[str, Any]] = {}
    for row in rows:
        slug, name, panel_url = row[0], row[1], row[2]
        conf = settings.campuses.get(slug)
        c = campuses.setdefault(slug, {
            "campus": slug, "name": (conf.name if conf and conf.name else name) or slug,
            "panel_url": safe_url(conf.panel_url if conf and conf.panel_url else panel_url),
            # the campus broker's bridge to the district (NULL: no bridge reported, e.g. one broker)
            "link_down": row[12] is False, "link_since": _iso(row[13]),
            "doors": []})
        if row[3] is not None:
            c["doors"].append(door_entry(row, t, settings.ring_alert_seconds))
    for c in campuses.values():
        c["doors"].sort(key=lambda d: d["door"])
        summarize(c)
    return {"now": _iso(t), "ring_alert_seconds": settings.ring_alert_seconds,
            "campuses": [campuses[k] for k in sorted(campuses)]}


def summarize(c: dict[str, Any]) -> dict[str, Any]:
    """A campus's counts from its doors (after a build or a patch)."""
    doors = c["doors"]
    c["online"] = sum(1 for d in doors if d["online"])
    levels = [d["lockdown"] for d in doors if d["lockdown"]]
    c["lockdown"] = levels[0] if levels else None
    c["lockdown_doors"] = len(levels)
    c["alarms"] = sum(1 for d in doors if d["alarms"])
    c["rings_overdue"] = sum(1 for d in doors if d["ring"] and d["ring"]["overdue"])
    return c


def patch(full: dict[str, Any], part: dict[str, Any]) -> dict[str, Any] | None:
    """``full`` with the doors of ``part`` replaced or added; None when ``part`` names a campus
    ``full`` does not have (then rebuild everything)."""
    by_slug = {c["campus"]: c for c in full["campuses"]}
    campuses = dict(by_slug)
    for pc in part["campuses"]:
        old = by_slug.get(pc["campus"])
        if old is None:
            return None
        doors = {d["door"]: d for d in old["doors"]}
        doors.update({d["door"]: d for d in pc["doors"]})
        campuses[pc["campus"]] = summarize({**old, "doors": [doors[k] for k in sorted(doors)]})
    return {**part, "campuses": [campuses[k] for k in sorted(campuses)]}


def campus_signature(c: dict[str, Any]) -> list[Any]:
    """A campus without what changes by itself (ages run in the browser): compared to push only
    the campuses whose picture changed."""
    return [c["campus"], c["name"], c["panel_url"], c["link_down"],
            [[d["door"], d["online"], d["last_seen"], d["state"], d["ring"] and d["ring"]["request_id"],
              d["ring"] and d["ring"]["overdue"], d["alarm_words"], d["lockdown"]] for d in c["doors"]]]


def signature(grid: dict[str, Any]) -> dict[str, list[Any]]:
    return {c["campus"]: campus_signature(c) for c in grid["campuses"]}
