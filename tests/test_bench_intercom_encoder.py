"""bench/intercom_encoder.py runs (tiny n) and reports both video paths with their baselines,
so the figures in hardware.md and the README cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import intercom_encoder

pytestmark = pytest.mark.media


def test_encoder_bench_runs_both_paths_against_same_run_baselines(tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.json"
    assert intercom_encoder.main(["--seconds", "1", "--repeats", "1", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "raw libvpx VP8 encode" in table and "hardware path" in table
    result = json.loads(out.read_text())
    assert set(result["median_cpu_per_s"]) == {"vp8_raw", "pack_raw", "software", "hardware"}
    assert result["median_cpu_per_s"]["vp8_raw"] > 0 and result["median_cpu_per_s"]["software"] > 0
    assert all(fps > 0 for runs in result["fps_received"].values() for fps in runs)   # video flowed both ways
