"""The visitor record staff may attach to an approval: who came in, and why.

Why a module of its own: the record is optional (approving stays one click), it is checked the
same way wherever it enters (the panel's form, the core), and it is personal data, so the one
place that decides what may leave the building over MQTT lives here too
(``mqtt.publish_visitor_names = false`` keeps the name in the journal and off the broker).
Pure module: no Flask, no paho, no I/O.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any, Mapping

from . import events as ev

NAME_MAX = 80
PURPOSES: dict[str, str] = {
    "parent_guardian": "Parent or guardian",
    "delivery": "Delivery",
    "contractor": "Contractor",
    "volunteer": "Volunteer",
    "other": "Other",
}
# Unicode categories refused in a name: control (Cc), format (Cf: bidi overrides, zero-width),
# line/paragraph separators and surrogates. They can forge lines in logs and CSV cells.
REFUSED_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


class VisitorError(ValueError):
    """A visitor record that must be refused; the message names the field (a 400 for the panel)."""


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else "\x00"


def parse(name: Any = None, purpose: Any = None, id_checked: Any = None) -> dict[str, Any] | None:
    """Check the three optional fields and return the record (None when all are empty).

    ``id_checked`` accepts True/False or the form values "1"/"0"/"yes"/"no"/"" (a checkbox)."""
    name_text, purpose_text = _text(name).strip(), _text(purpose).strip()
    if name_text == "\x00" or purpose_text == "\x00":
        raise VisitorError("visitor: name and purpose must be text")
    if len(name_text) > NAME_MAX:
        raise VisitorError(f"visitor_name: longer than {NAME_MAX} characters")
    bad = next((ch for ch in name_text if unicodedata.category(ch) in REFUSED_CATEGORIES), None)
    if bad is not None:
        raise VisitorError(f"visitor_name: control or invisible characters are not allowed "
                           f"(U+{ord(bad):04X})")
    if purpose_text and purpose_text not in PURPOSES:
        raise VisitorError(f"visitor_purpose: {purpose_text[:40]!r} is not one of "
                           f"{', '.join(PURPOSES)}")
    if isinstance(id_checked, bool) or id_checked is None:
        checked = bool(id_checked)
    elif isinstance(id_checked, str) and id_checked.strip().lower() in ("", "0", "no", "false", "off"):
        checked = False
    elif isinstance(id_checked, str) and id_checked.strip().lower() in ("1", "yes", "true", "on"):
        checked = True
    else:
        raise VisitorError("visitor_id_checked: use yes or no")
    if not (name_text or purpose_text or checked):
        return None
    record: dict[str, Any] = {"id_checked": checked}
    if name_text:
        record["name"] = name_text
    if purpose_text:
        record["purpose"] = purpose_text
    return record


def check(record: Any) -> dict[str, Any] | None:
    """The core's check of a record it is given (whatever the caller): same rules as ``parse``."""
    if record is None:
        return None
    if not isinstance(record, Mapping) or set(record) - {"name", "purpose", "id_checked"}:
        raise VisitorError("visitor: only name, purpose and id_checked may be given")
    return parse(record.get("name"), record.get("purpose"), record.get("id_checked"))


def describe(record: Any) -> str:
    """One line for History, the CSV and the activity feed: "Jane Doe · Delivery · ID checked"."""
    if not isinstance(record, Mapping):
        return ""
    parts = []
    if record.get("name"):
        parts.append(str(record["name"]))
    elif record.get("name_withheld"):
        parts.append("(name withheld)")
    if record.get("purpose"):
        parts.append(PURPOSES.get(str(record["purpose"]), str(record["purpose"])))
    parts.append("ID checked" if record.get("id_checked") else "ID not checked")
    return " · ".join(parts)


def mqtt_text(event: ev.Event, publish_names: bool) -> str:
    """The JSON text an event is published with. With ``publish_names`` false an approval's
    visitor name stays in the journal and is replaced by ``name_withheld: true`` on MQTT."""
    visitor = event.data.get("visitor") if event.type == ev.ENTRY_APPROVED else None
    if publish_names or not isinstance(visitor, Mapping) or "name" not in visitor:
        return event.to_json()
    out = event.to_dict()
    out["visitor"] = {k: v for k, v in visitor.items() if k != "name"} | {"name_withheld": True}
    return json.dumps(out, separators=(",", ":"), sort_keys=True)
