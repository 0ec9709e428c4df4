"""History export against concurrent journal appends (issue 12).

A 10,000-event CSV export through the real panel (Flask test client, the real controller on
mock pins) runs in one thread while another appends journal events at a ring's cadence, timing
each append. The same appends are timed with no export running: that is the raw baseline of
this run. The export reads on its own read-only connection with one query per page; before
issue 12 it ran one query per ring on the writer's connection (1,994 queries for 10,000 rows)
and pushed the appends' p99 from under 1 ms to 36 ms.
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller import daemon
from controller import events as ev
from controller.simulate import SIM_GPIO

from .stats import summary_ms

PASSWORD = "orbit-lantern-quietly-7"
APPEND_SPACING = 0.005          # an event every 5 ms: far busier than a real door


def _fill(journal: Any, events: int) -> None:
    """Rings of four events each (press, photo, approval, door unlocked)."""
    for i in range((events + 3) // 4):
        rid = f"bench-{i:06d}"
        journal.append(ev.BUZZER_PRESSED, rid, presses=1)
        journal.append(ev.SNAPSHOT_CAPTURED, rid, size=1000, sha256="0" * 64, snapshot=1, press=1)
        journal.append(ev.ENTRY_APPROVED, rid, "Sam Staff")
        journal.append(ev.DOOR_UNLOCKED, rid, reason="approved", seconds=5)


def _time_appends(journal: Any, n: int, keep_going: threading.Event | None = None) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        journal.append(ev.COMMAND_REJECTED, None, source="bench", reason="timing")
        samples.append(time.perf_counter() - started)
        if keep_going is not None and not keep_going.is_set():
            break
        time.sleep(APPEND_SPACING)
    return samples


def export_vs_appends(events: int = 10_000, appends: int = 400) -> dict[str, Any]:
    from web import close_app, create_app
    with tempfile.TemporaryDirectory(prefix="entry-bench-history-") as tmp:
        settings = cfg.with_overrides(
            cfg.Settings(), gpio=SIM_GPIO, camera={"kind": "simulated", "width": 160, "height": 120},
            storage={"state_dir": Path(tmp) / "state"}, mqtt={"enabled": False}, web={"enabled": False})
        factory = MockFactory()
        controller = daemon.build(settings, pin_factory=factory)
        app = create_app(controller, test_config={"TESTING": True, "PASSWORD_SCRYPT_N": 2 ** 10})
        try:
            _fill(controller.journal, events)
            store = app.extensions["panel_store"]
            store.add_user("sam", PASSWORD, "staff", "Sam Staff")
            client = app.test_client()
            page = client.get("/login").get_data(as_text=True)
            token = re.search(r'name="csrf_token" value="([^"]*)"', page).group(1)    # type: ignore[union-attr]
            client.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": token, "next": "/"})

            baseline = _time_appends(controller.journal, appends)

            exporting = threading.Event()
            exporting.set()
            exports: list[tuple[float, int]] = []

            def export_loop() -> None:
                while exporting.is_set():
                    started = time.perf_counter()
                    resp = client.get("/history.csv")
                    rows = resp.get_data(as_text=True).count("\n") - 1
                    exports.append((time.perf_counter() - started, rows))

            thread = threading.Thread(target=export_loop, name="bench-export", daemon=True)
            thread.start()
            while not exports and thread.is_alive():       # wait until an export is under way
                time.sleep(0.01)
            during = _time_appends(controller.journal, appends)
            exporting.clear()
            thread.join(120)
        finally:
            close_app(app)
            daemon.stop(controller, "bench done")
            factory.reset()
    base, loaded = summary_ms(baseline), summary_ms(during)
    return {"events": events, "exports": len(exports), "export_rows": exports[0][1] if exports else 0,
            "export_seconds": round(sum(s for s, _ in exports) / max(1, len(exports)), 3),
            "appends_idle": base, "appends_during_export": loaded,
            "p99_ratio": round(loaded["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None}


if __name__ == "__main__":
    import json
    print(json.dumps(export_vs_appends(), indent=2))
