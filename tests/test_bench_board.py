"""The district board bench's smoke run: a few campuses end to end (real PostgreSQL, Mosquitto,
the recorder and the board as processes, a signed-in /live stream) reports every measure, with
publish -> board split at the board's NOTIFY, and every probe change shown."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench import district_board

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.process]


def test_board_bench_smoke_splits_publish_to_board_at_the_notify() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-board-smoke-") as tmp:
        r = district_board.run_case(3, samples=4, tmp=Path(tmp), cycle_seconds=2.0)
    assert r["not_shown"] == 0 and r["sent"] == 4 and r["error"] is None and r["live_streams"] == 1, r
    assert r["split_samples"] == 4, r      # every shown change was also heard committed, by its own mark
    for key in ("board", "to_notify"):
        assert r[f"{key}_p50_ms"] > 0 and r[f"{key}_p99_ms"] >= r[f"{key}_p50_ms"], (key, r)
    assert 0 < r["raw_mqtt"]["p50_ms"] <= r["raw_mqtt"]["p99_ms"] and r["raw_mqtt"]["not_seen"] == 0, r
    assert set(r["cpu_per_second"]) == {"recorder", "board", "postgres", "pg_recorder", "pg_board", "load",
                                        "broker", "bench"}, r
    # the load (plain-socket doors, one process at a lower priority) had every message acknowledged
    assert r["load_sent"]["published"] == r["load_sent"]["acknowledged"] > 0 and r["load_nice"] > 0, r
    assert r["events_recorded_per_second"] > 0, r
    assert 0 <= r["notify_to_frame_p50_ms"] <= r["notify_to_frame_p99_ms"], r
    # both parts come from the same samples as the whole: neither exceeds it
    assert r["to_notify_p50_ms"] <= r["board_p99_ms"] and r["notify_to_frame_p50_ms"] <= r["board_p99_ms"]


class _Probe:
    def __init__(self) -> None:
        self.marks: list[str] = []

    def publish_state(self, **state: str) -> Any:
        self.marks.append(state["fault"])
        return SimpleNamespace(wait_for_publish=lambda _t: None)


class _Seen:
    """Shows (and announces as committed) only the marks in ``shown``."""

    def __init__(self, shown: set[int]):
        self.shown = shown

    def wait(self, key: tuple[str, str], timeout: float) -> float | None:
        return time.time() + 0.01 if int(key[1].rsplit(" ", 1)[1]) in self.shown else None

    def when(self, mark: str, wait: float = 0.0) -> float | None:
        return time.time() if int(mark.rsplit(" ", 1)[1]) in self.shown else None


def test_board_bench_counts_changes_never_shown_and_gives_up_when_the_chain_stalls(monkeypatch: Any) -> None:
    monkeypatch.setattr(district_board.time, "sleep", lambda _s: None)
    probe = _Probe()
    r = district_board.sample_board(probe, _Seen({0, 1, 2}), _Seen({0, 1, 2}), samples=120, timeout=0.01,
                                    give_up_after=3)
    # stopped after 3 in a row instead of waiting out 117 timeouts; every change carried its own mark
    assert r["sent"] == 6 and r["not_shown"] == 3 and "gave up after 6 of 120" in r["error"], r
    assert probe.marks == [f"bench probe {i}" for i in range(6)]
    assert r["board_p99_ms"] == float("inf"), r          # not shown counts as slowest, never dropped
    assert r["split_samples"] == 3 and r["not_shown_but_committed"] == 0, r
