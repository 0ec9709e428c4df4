"""The door rules: the one settings class the core runs on and config.toml's ``[door]`` section
is parsed into (config validates it; the core needs nothing else from config).

Standard library only: the core imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DoorSettings:
    unlock_seconds: float = 5.0             # capped at vocabulary.UNLOCK_CAP_SECONDS
    ring_timeout_seconds: float = 60.0
    held_open_seconds: float = 30.0
    debounce_ms: int = 50
    repeat_press_journal_seconds: float = 2.0
    denied_indicator_seconds: float = 5.0
    relock_on_close: bool = True
    exit_request_seconds: float = 10.0      # a door opening this soon after request-to-exit is egress
