"""The recorder's batch and in-flight defaults (issue 15): a drain writes batches of up to 1000
messages, and the broker keeps two full batches in flight to an instance, so one is classified
while the other commits (README, "District load bench": measured against 500/1000, alternated).
The example config carries the same values, so an operator copying it gets what was measured."""

from __future__ import annotations

import tomllib
from pathlib import Path

from district import config

EXAMPLE = Path(__file__).resolve().parents[1] / "district" / "district.example.toml"


def test_two_full_batches_of_a_thousand_fit_in_flight_by_default() -> None:
    defaults = config.Settings()
    assert defaults.recorder.batch_max == 1000
    assert defaults.broker.receive_maximum >= 2 * defaults.recorder.batch_max


def test_the_example_config_carries_the_measured_batch_and_flight_sizes() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    assert example["recorder"]["batch_max"] == config.Recorder.batch_max
    assert example["broker"]["receive_maximum"] == config.Broker.receive_maximum
