"""The intercom benchmark's smoke run: every measure runs end to end and reports numbers
(Chromium, the daemon in-process and as its own process, a private Mosquitto). Targets are
never asserted here (a shared, noisy machine); this keeps bench/intercom.py from rotting."""

from __future__ import annotations

import math

import pytest

from bench import intercom

pytestmark = [pytest.mark.browser, pytest.mark.media, pytest.mark.broker, pytest.mark.process]


@pytest.mark.timeout(600)       # seven viewer phases in three browsers, on a shared machine
def test_intercom_smoke_run_reports_every_measure():
    results = intercom.run(smoke=True)
    lat, fp = results["latency"], results["footprint"]
    for name in ("glass_to_glass", "audio_door_to_office", "audio_office_to_door", "press_to_first_frame"):
        assert lat[name]["n"] >= 1 and math.isfinite(lat[name]["p50_ms"]), (name, lat[name])
        assert 0 <= lat[name]["p50_ms"] < 5000, (name, lat[name])
    for name, *_ in intercom.PHASES:
        row = fp[name]
        assert row["rss_mb"] > 0 and len(row["p50_by_round"]) == fp["rounds"] and row["ratio"] > 0, (name, row)
    for setup in ("office", "shared"):                                          # 4 streams were encoded
        assert fp[f"{setup}_4"]["cpu_percent"] > fp["idle"]["cpu_percent"], setup
    assert "nice -n 19" in fp["office_prefix"]
    table = intercom.table(results)
    assert table.startswith("| measure") and "Machine:" in table
