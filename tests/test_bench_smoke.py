"""The benchmark's smoke run: every measure runs end to end and reports numbers.

Targets are never asserted here (shared, noisy machines); this only keeps bench/ from rotting.
"""

from __future__ import annotations

import math

import pytest

from bench import run

pytestmark = [pytest.mark.broker, pytest.mark.process]

MEASURES = ["baseline_a_paho_roundtrip", "baseline_b_sqlite_commit", "baseline_b_back_to_back", "baseline_paho_burst",
            "press_to_mqtt", "press_floor",
            "outage_drain", "press_to_panel", "approve_to_strike", "startup_to_ready", "footprint",
            "memory_growth", "cpu_per_cycle", "reconnect", "command_flood", "history_export", "panic_vs_press"]


def test_smoke_run_reports_every_measure():
    results = run.run(smoke=True)
    for name in MEASURES:
        assert name in results and "error" not in results[name], results.get(name)
    assert results["press_to_mqtt"]["n"] == 20 and results["press_to_panel"]["n"] == 20
    # the press and its baselines are sampled in turn, one of each per round (issue 11)
    assert results["baseline_a_paho_roundtrip"]["n"] == results["baseline_b_sqlite_commit"]["n"] == 20
    assert results["baseline_b_back_to_back"]["n"] == 20 * 4
    assert results["press_to_mqtt"]["interleaved"] is True and results["press_floor"]["n"] == 20
    assert results["press_to_mqtt"]["ratio_cadence"] > 0 and results["press_to_mqtt"]["ratio_back_to_back"] > 0
    assert results["panic_vs_press"]["panic"]["n"] == results["panic_vs_press"]["press"]["n"] == 20
    assert "desk panic -> alarm" in run.table(results)
    assert results["outage_drain"]["lost"] == 0
    assert results["outage_drain"]["delivered"] >= results["outage_drain"]["outbox_depth_at_return"]
    for value in (results["press_to_mqtt"]["p50_ms"], results["approve_to_strike"]["approve"]["p99_ms"],
                  results["footprint"]["rss_mb"], results["startup_to_ready"]["p50_ms"]):
        assert math.isfinite(value) and value > 0
    table = run.table(results)
    assert table.startswith("| measure") and "Machine:" in table and "error:" not in table
