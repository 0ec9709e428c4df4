"""The district board bench's smoke run: a few campuses end to end (real PostgreSQL, Mosquitto,
the recorder and the board as processes, a signed-in /live stream) reports every measure, with
publish -> board split at the board's NOTIFY, and every probe change shown."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from bench import district_board

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.process]


def test_board_bench_smoke_splits_publish_to_board_at_the_notify() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-board-smoke-") as tmp:
        r = district_board.run_case(3, samples=4, tmp=Path(tmp), cycle_seconds=2.0)
    assert r["not_shown"] == 0 and r["live_streams"] == 1, r
    for key in ("board", "to_notify", "raw_mqtt"):
        assert r[f"{key}_p50_ms"] > 0 and r[f"{key}_p99_ms"] >= r[f"{key}_p50_ms"], (key, r)
    assert 0 <= r["notify_to_frame_p50_ms"] <= r["notify_to_frame_p99_ms"], r
    # both parts come from the same samples as the whole: neither exceeds it
    assert r["to_notify_p50_ms"] <= r["board_p99_ms"] and r["notify_to_frame_p50_ms"] <= r["board_p99_ms"]
