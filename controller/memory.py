"""glibc malloc tuning for a small, long-running, multi-threaded daemon on a Pi.

Measured (bench/): each password check (scrypt, 16 MB) in a new panel thread left 16 MB
resident, because glibc raises its mmap threshold after the first large free and gives every
thread its own arena. Fixing the threshold and capping arenas keeps RSS flat (77 -> ~60 MB
after 1,000 rings in the simulated campus). A no-op where glibc is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(arena_max: int = 2, mmap_threshold: int = 1 << 20) -> bool:
    """Cap malloc arenas and pin the mmap threshold (so large blocks go back to the OS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(M_ARENA_MAX, arena_max)) and bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    if not ok:
        log.debug("mallopt tuning not applied")
    return ok
