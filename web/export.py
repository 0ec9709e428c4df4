"""Search filters and CSV downloads shared by the panel's History and the district board's search.

Why shared: both export journal events to a spreadsheet, and a CSV cell that starts with
= + - @ tab or CR is run as a formula by Excel or LibreOffice (CSV injection); one escaping
rule, one writer, so a fix reaches both. Both answer a bad filter with a 400 naming the field,
before anything touches the journal or the database.

Neutral: Flask, the standard library and the controller's words (events, labels) only.
"""

from __future__ import annotations

import csv
import io
import json
from functools import wraps
from typing import Any, Callable, Iterable, Mapping, Sequence

from flask import Response, request

from controller import events as ev
from controller import labels

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


class BadFilter(ValueError):
    """A refused filter; the message names the field and is answered as a 400."""


def event_types() -> list[str]:
    """The ``type`` filters of the query string: known event types only."""
    types = [t for t in request.args.getlist("type") if t]
    unknown = [t for t in types if t not in ev.ALL_TYPES]
    if unknown:
        raise BadFilter(f"type: {unknown[0][:40]!r} is not an event type")
    return types


def type_choices() -> list[tuple[str, str]]:
    """Every event type with its human label, for the filter form."""
    return [(t, labels.type_label(t)) for t in ev.ALL_TYPES]


def with_filters(parse: Callable[[], dict[str, Any]],
                 error: Callable[[int, str], Response]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run the view with the parsed filters as its first argument; a BadFilter is a 400."""
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                filters = parse()
            except BadFilter as exc:
                return error(400, str(exc))
            return view(filters, *args, **kwargs)
        return wrapper
    return decorate


def cell(value: Any) -> str:
    """Spreadsheet-safe text: a cell starting with = + - @ tab or CR is not run as a formula.

    Applied to every column, not only the free-text ones: a request id, an event type or a
    time comes from the journal, and the journal takes whatever a caller wrote.
    """
    if isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        text = json.dumps(value, sort_keys=True)
    return "'" + text if text.startswith(FORMULA_LEADS) else text


def csv_download(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], filename: str,
                 each_row: Callable[[int], None] | None = None) -> Response:
    """A CSV attachment: a header row, then ``columns`` of every row, each cell escaped.
    ``each_row(i)`` runs before row i is written (the panel yields the GIL to the door there)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for i, row in enumerate(rows):
        if each_row is not None:
            each_row(i)
        writer.writerow([cell(row[key]) for key in columns])
    resp = Response(buf.getvalue(), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp
