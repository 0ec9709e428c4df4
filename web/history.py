"""Visit and event history from the journal: filters, paging, CSV export, snapshot files.

Snapshots are served only to signed-in staff and only by request id, through
the facade's snapshot_path (SnapshotService.path_for validates the id), so no path from a request
ever reaches the file system.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from flask import Blueprint, Response, render_template, request

from controller import events as ev
from controller import labels
from controller import visitor as visitor_record
from controller.api import let_others_run

from . import security as sec
from .export import BadFilter, csv_download, event_types, type_choices, with_filters

bp = Blueprint("history", __name__)

PAGE_SIZE = 50
CSV_LIMIT = 10_000
# "event" and "note" are the human words (controller/labels.py); "type" stays for scripts.
CSV_COLUMNS = ("seq", "time", "event", "staff", "outcome", "outcome_by", "note", "visitor", "request_id", "type",
               "details")


THUMB_TYPES = {ev.BUZZER_PRESSED, ev.SNAPSHOT_CAPTURED}


def _note(e: Any) -> str:
    """One short, human detail for non-visit rows (why a door locked, which alarm, …)."""
    return labels.note(e.data)


def _date(name: str) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise BadFilter(f"{name}: {raw[:40]!r} is not a date; use YYYY-MM-DD") from None


def parse_filters() -> dict[str, Any]:
    """Validated filters from the query string; BadFilter names the field at fault."""
    types = event_types()
    since, until = _date("since"), _date("until")
    if since and until and until < since:
        raise BadFilter("until: must not be before since")
    before_raw = request.args.get("before", "").strip()
    before = None
    if before_raw:
        if not before_raw.isdigit() or len(before_raw) > 12:
            raise BadFilter("before: must be an event number")
        before = int(before_raw)
    return {
        "types": types,
        "since": datetime.combine(since, time.min, timezone.utc) if since else None,
        "until": datetime.combine(until + timedelta(days=1), time.min, timezone.utc) if until else None,
        "before_seq": before,
        "since_text": since.isoformat() if since else "",
        "until_text": until.isoformat() if until else "",
    }


def rows(limit: int, f: dict[str, Any]) -> list[dict[str, Any]]:
    c = sec.controller()
    page = c.history_page(types=f["types"] or None, since=f["since"], until=f["until"],
                          before_seq=f["before_seq"], limit=limit)      # one query, read-only
    result = []
    for i, row in enumerate(page):
        let_others_run(i)            # a 10,000-row export must not hold up the door's journal appends
        e, outcome, staff = row.event, row.outcome, row.outcome_by
        result.append({
            "seq": e.seq, "time": ev.utc_iso(e.ts), "type": e.type, "request_id": e.request_id or "",
            "event": labels.type_label(e.type, e.data),
            # who acted on THIS row: a press has no staff (its outcome column names the approver)
            "staff": e.actor or str(e.data.get("username", "")),
            "outcome": outcome, "outcome_by": staff or "",
            "note": _note(e),
            "visitor": visitor_record.describe(e.data.get("visitor")),    # on the entry_approved row
            "snapshot": bool(e.type in THUMB_TYPES and e.request_id and c.snapshot_path(e.request_id)),
            "details": dict(e.data),
        })
    return result


@bp.get("/history")
@sec.require()
@with_filters(parse_filters, sec.error)
def history(f: dict[str, Any]) -> Any:
    page = rows(PAGE_SIZE + 1, f)
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return render_template("history.html", rows=page, more=more, filters=f,
                           types=type_choices(),
                           next_before=page[-1]["seq"] if page and more else None)


@bp.get("/history.csv")
@sec.require()
@with_filters(parse_filters, sec.error)
def history_csv(f: dict[str, Any]) -> Any:
    return csv_download(CSV_COLUMNS, rows(CSV_LIMIT, f), "entry-history.csv", each_row=let_others_run)


@bp.get("/snapshot/<request_id>")
@sec.require()
def snapshot(request_id: str) -> Any:
    n = request.args.get("n", "")
    path = sec.controller().snapshot_path(request_id, int(n) if n.isdigit() and len(n) < 6 else None)
    if path is None:
        return sec.error(404, "no snapshot for that request id")
    try:
        data = path.read_bytes()        # small JPEGs: no open file handle outlives the request
    except OSError:
        return sec.error(404, "no snapshot for that request id")
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, no-store"})
