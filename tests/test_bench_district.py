"""The district load bench's smoke run: every measure runs end to end (real PostgreSQL,
Mosquitto, recorder processes, SIGKILL) and reports 0 lost and 0 duplicated."""

from __future__ import annotations

import pytest

from bench import district_load

pytestmark = [pytest.mark.postgres, pytest.mark.broker, pytest.mark.process]


def test_district_bench_smoke_reports_every_measure() -> None:
    results = district_load.run(smoke=True)
    cases = results["paced"] + results["drain"] + [results["kill"]]
    assert len(results["paced"]) == 2 and len(results["drain"]) == 2
    for case in cases:
        assert case["lost"] == 0 and case["duplicated"] == 0, case
        assert case["rows"] == case["events_sent"]
        assert case["rss_mb"] > 0
    assert results["kill"]["rows"] > 0
    first = results["drain"][0]
    assert first["recorder_rows_per_s"] > 0 and first["raw_insert_rows_per_s"] > 0 and first["raw_copy_rows_per_s"] > 0
    assert "ratio_to_raw_insert" in first and "ratio_to_raw_copy" in first   # tiny smoke backlogs round them to 0.0
    two = results["drain"][-1]     # both measured; their ratio of tiny smoke backlogs may round to 0.0
    assert "two_vs_one" in two and all(r > 0 for r in two["one_runs"] + two["two_runs"]), two
    assert "| campuses |" in district_load.table(results)
