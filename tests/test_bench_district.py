"""The district load bench: its capacity drains alternate with their own raw baselines and
report the median ratio with every drain's; its smoke run has every measure run end to end
(real PostgreSQL, Mosquitto, recorder processes, SIGKILL) and report 0 lost and 0 duplicated."""

from __future__ import annotations

import pytest

from bench import district_load


@pytest.mark.fast
def test_drains_alternate_with_their_own_baselines_and_report_the_median_ratio(monkeypatch) -> None:
    calls: list[str] = []
    rates, raws = iter([8000.0, 12000.0, 10000.0]), iter([20000.0, 20000.0, 10000.0])

    def backlog(rig, n, cycles_each, instances):
        calls.append("drain")
        return {"recorder_rows_per_s": next(rates), "recorder_cpu_ms_per_1000": 50.0, "lost": 0, "duplicated": 1,
                "rss_mb": 100.0, "rows": 14000, "n": n, "instances": instances}

    def raw_baseline(rig):
        calls.append("baseline")
        return {"raw_insert_rows_per_s": next(raws), "raw_copy_rows_per_s": 16000.0}

    monkeypatch.setattr(district_load, "backlog", backlog)
    monkeypatch.setattr(district_load, "raw_baseline", raw_baseline)
    d = district_load.drain_pairs(None, 100, 20, 3)      # type: ignore[arg-type]
    assert calls == ["drain", "baseline"] * 3
    assert d["runs"]["ratio_to_raw_insert"] == [0.4, 0.6, 1.0]
    assert d["ratio_to_raw_insert"] == 0.6                # the median drain's own ratio, not 10000 / 20000
    assert d["recorder_rows_per_s"] == 10000.0 and d["raw_insert_rows_per_s"] == 20000.0
    assert d["pairs"] == 3 and d["duplicated"] == 3 and len(d["runs"]["load_average"]) == 3
    table = district_load.table({"paced": [], "kill": None, "drain": [d]})
    assert "**0.6** (0.4, 0.6, 1.0)" in table


@pytest.mark.postgres
@pytest.mark.broker
@pytest.mark.process
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
    assert first["pairs"] == 1 and len(first["runs"]["ratio_to_raw_insert"]) == 1     # one drain in a smoke run
    assert first["recorder_rows_per_s"] > 0 and first["raw_insert_rows_per_s"] > 0 and first["raw_copy_rows_per_s"] > 0
    assert "ratio_to_raw_insert" in first and "ratio_to_raw_copy" in first   # tiny smoke backlogs round them to 0.0
    two = results["drain"][-1]     # both measured; their ratio of tiny smoke backlogs may round to 0.0
    assert "two_vs_one" in two and all(r > 0 for r in two["one_runs"] + two["two_runs"]), two
    assert "| campuses |" in district_load.table(results)
