"""One door's timeline with its entrance snapshots, from PostgreSQL.

Snapshots are served by their row id only, to signed-in users; the id is an integer from
the route, so nothing from a request reaches a file or a query as text. The timeline is one
query per page (events joined to their snapshot row), newest first, keyset paged.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, render_template, request

from . import security as sec
from .config import SLUG
from .search import CURSOR, BadFilter, cursor_of, row_dict

bp = Blueprint("board_doors", __name__)

PAGE_SIZE = 50
TIMELINE_SQL = """
SELECT e.id, e.campus, e.door, e.epoch, e.seq, e.type, e.ts, e.request_id, e.actor, e.data, s.id
  FROM events e
  LEFT JOIN snapshots s ON e.type = 'snapshot_captured' AND s.campus = e.campus AND s.door = e.door
                       AND s.request_id = e.request_id AND s.sha256 = e.data->>'sha256'
 WHERE e.campus = %s AND e.door = %s {cursor}
 ORDER BY e.ts DESC, e.id DESC LIMIT %s
"""


def _door_or_error(campus: str, door: str) -> Any:
    if not SLUG.match(campus) or not SLUG.match(door):
        return sec.error(400, "campus and door must be slugs (lowercase letters, digits, '-', '_')")
    grid = current_app.extensions["board_hub"].latest or current_app.extensions["board_hub"].refresh() or {}
    for c in grid.get("campuses", []):
        if c["campus"] == campus:
            for d in c["doors"]:
                if d["door"] == door:
                    return c, d
    return sec.error(404, f"no door {door!r} at campus {campus!r}")


@bp.get("/door/<campus>/<door>")
@sec.require()
def timeline(campus: str, door: str) -> Any:
    found = _door_or_error(campus, door)
    if isinstance(found, Response):
        return found
    c, d = found
    before = request.args.get("before", "").strip()
    params: list[Any] = [campus, door]
    cursor_sql = ""
    if before:
        m = CURSOR.match(before)
        if not m:
            return sec.error(400, str(BadFilter("before: not a page cursor (use the Older link)")))
        cursor_sql = "AND (e.ts, e.id) < (%s::timestamptz, %s::uuid)"
        params += [m.group(1), m.group(2)]
    params.append(PAGE_SIZE + 1)
    with current_app.extensions["board_pool"].connection() as conn:
        rows = conn.execute(TIMELINE_SQL.format(cursor=cursor_sql), params).fetchall()
    page = []
    for r in rows[:PAGE_SIZE]:
        item = row_dict(r[:10])
        item["snapshot_id"] = r[10]
        page.append(item)
    older = cursor_of(page[-1]) if len(rows) > PAGE_SIZE and page else None
    return render_template("board_door.html", campus=c, door=d, rows=page, older=older)


@bp.get("/snapshot/<int:snapshot_id>")
@sec.require()
def snapshot(snapshot_id: int) -> Any:
    if snapshot_id > 2 ** 62:
        return sec.error(404, "no such snapshot")
    with current_app.extensions["board_pool"].connection() as conn:
        row = conn.execute("SELECT data, content_type FROM snapshots WHERE id = %s", (snapshot_id,)).fetchone()
    if row is None:
        return sec.error(404, "no such snapshot")
    mimetype = row[1] if row[1] in ("image/jpeg", "image/png") else "application/octet-stream"
    return Response(bytes(row[0]), mimetype=mimetype, headers={"Cache-Control": "private, no-store"})
