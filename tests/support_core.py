"""Fixtures for the core tests: a real SQLite journal in a temp dir on the fake clock, and a
strike that records its calls. Registered through ``pytest_plugins`` in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from controller.journal import Journal


class RecordingStrike:
    """Strike port that records every call with the fake clock's time."""

    def __init__(self, clock: Any):
        self.clock = clock
        self.on = False
        self.calls: list[tuple[str, float]] = []

    def unlock(self) -> None:
        self.on = True
        self.calls.append(("unlock", self.clock.monotonic()))

    def lock(self) -> None:
        self.on = False
        self.calls.append(("lock", self.clock.monotonic()))

    def pulses(self) -> list[tuple[float, float]]:
        out, start = [], None
        for name, t in self.calls:
            if name == "unlock" and start is None:
                start = t
            elif name == "lock" and start is not None:
                out.append((start, t))
                start = None
        return out


class FailingJournal:
    """Wraps a journal; append raises while ``broken`` is set (disk full, read-only)."""

    def __init__(self, journal: Any):
        self.journal = journal
        self.broken = False

    def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.broken:
            raise OSError("disk full")
        return self.journal.append(*args, **kwargs)


@pytest.fixture
def journal(tmp_path: Path, clock: Any) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3", "campus", "door", now=clock.now)
    yield j
    j.close()


@pytest.fixture
def strike(clock: Any) -> RecordingStrike:
    return RecordingStrike(clock)
