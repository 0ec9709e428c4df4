"""Search and CSV export across campuses, by time, event type and campus (and door).

One query per page: keyset paging on (ts, id), newest first, so page 500 costs what page 1
costs (no OFFSET). Filters are validated before anything touches the database and a bad
one gets a 400 that names it. The type filter, the 400 for a bad
filter and the CSV writer are the campus History's (web/export.py): a cell starting with
= + - @ tab or CR is never run as a formula by a spreadsheet.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template, request

from controller import labels
from web.export import BadFilter, csv_download, event_types, type_choices, with_filters

from . import security as sec
from .config import SLUG

bp = Blueprint("board_search", __name__)

PAGE_SIZE = 50
CSV_LIMIT = 10_000
CSV_COLUMNS = ("time", "campus", "door", "event", "staff", "note", "type", "seq", "epoch", "request_id", "id")
WHERE = (("types", "type = ANY(%s)"), ("campuses", "campus = ANY(%s)"), ("door", "door = %s"),
         ("since", "ts >= %s"), ("until", "ts < %s"))          # filter -> its SQL condition
CURSOR = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+(?:\+00:00|Z))~([0-9a-f-]{36})$")


def _when(name: str, end: bool) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > 40:
        raise BadFilter(f"{name}: too long; use YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return datetime.combine(d + timedelta(days=1) if end else d, time.min, timezone.utc)
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{name}: {raw[:40]!r} is not a date or time; use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def known_campuses() -> set[str]:
    grid = current_app.extensions["board_hub"].latest or current_app.extensions["board_hub"].refresh() or {}
    return {c["campus"] for c in grid.get("campuses", [])}


def _slug(name: str, value: str) -> str:
    if not SLUG.match(value):
        raise BadFilter(f"{name}: {value[:40]!r} is not a {name} slug")
    return value


def _cursor() -> tuple[datetime, uuid.UUID] | None:
    """The Older link's ``before``: the (ts, id) of the last row shown."""
    before = request.args.get("before", "").strip()
    if not before:
        return None
    m = CURSOR.match(before)
    try:
        if m:
            return datetime.fromisoformat(m.group(1).replace("Z", "+00:00")), uuid.UUID(m.group(2))
    except ValueError:
        pass
    raise BadFilter("before: not a page cursor (use the Older link)")


def parse_filters() -> dict[str, Any]:
    """Validated filters from the query string; BadFilter names the field at fault."""
    types = event_types()
    campuses = [_slug("campus", c) for c in request.args.getlist("campus") if c]
    if campuses:
        known = known_campuses()
        missing = [c for c in campuses if c not in known]
        if missing:
            raise BadFilter(f"campus: {missing[0]!r} is not a campus of this district")
    door = request.args.get("door", "").strip()
    if door:
        _slug("door", door)
    since, until = _when("since", False), _when("until", True)
    if since and until and until <= since:
        raise BadFilter("until: must be after since")
    return {"types": types, "campuses": campuses, "door": door, "since": since, "until": until, "cursor": _cursor(),
            "since_text": request.args.get("since", "")[:40], "until_text": request.args.get("until", "")[:40]}


def query(f: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    where = [clause for key, clause in WHERE if f[key]]
    params: list[Any] = [f[key] for key, _ in WHERE if f[key]]
    if f["cursor"]:
        where.append("(ts, id) < (%s, %s)")
        params += list(f["cursor"])
    sql = ("SELECT id, campus, door, epoch, seq, type, ts, request_id, actor, data FROM events"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY ts DESC, id DESC LIMIT %s")
    params.append(limit)
    with current_app.extensions["board_pool"].connection() as conn:
        rows = conn.execute(sql, params).fetchall()
    return [row_dict(r) for r in rows]


def row_dict(r: tuple[Any, ...]) -> dict[str, Any]:
    eid, campus, door, epoch, seq, type_, ts, request_id, actor, data = r
    data = data if isinstance(data, dict) else {}
    return {"id": str(eid), "campus": campus, "door": door, "epoch": epoch, "seq": seq, "type": type_,
            "time": ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ts": ts, "request_id": request_id or "", "staff": actor or str(data.get("username", "")),
            "event": labels.type_label(type_, data), "note": labels.note(data)}


def cursor_of(row: dict[str, Any]) -> str:
    return f"{row['ts'].astimezone(timezone.utc).isoformat()}~{row['id']}"


@bp.get("/search")
@sec.require()
@with_filters(parse_filters, sec.error)
def search(f: dict[str, Any]) -> Any:
    page = query(f, PAGE_SIZE + 1)
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    older = None
    if more:
        args = request.args.to_dict(flat=False)
        args["before"] = [cursor_of(page[-1])]
        older = "/search?" + urlencode(args, doseq=True)
    return render_template("board_search.html", rows=page, filters=f, older=older,
                           campuses=sorted(known_campuses()), types=type_choices())


@bp.get("/search.csv")
@sec.require()
@with_filters(parse_filters, sec.error)
def search_csv(f: dict[str, Any]) -> Any:
    return csv_download(CSV_COLUMNS, query(f, CSV_LIMIT), "district-events.csv")
