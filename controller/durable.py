"""Small durable state outside the journal: the lockdown file and the disk reserve.

Why outside the journal: a lockdown must hold whatever happens to the journal (disk full,
file truncated, deleted or replaced). The lockdown file is a few hundred bytes written
atomically (write a temp file, fsync, rename, fsync the directory) *before* the core reports
the lockdown as started, and removed only after ``lockdown_ended`` is journaled.

The disk reserve (a "ballast" file of a few MB in the state directory) keeps space for
safety events: when a journal or lockdown write fails, the core releases it and retries, so
the lockdown and the events around it still reach the journal (and from there MQTT) on a
full disk. It is re-created once the disk has room again.

These are the file adapters for the core's ``LockdownStore`` and ``SpaceReserve`` ports.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCKDOWN_FILE = "lockdown.json"
RESERVE_FILE = "reserve.ballast"
RESERVE_BYTES = 4 * 1024 * 1024
UNREADABLE = {"id": None, "since": None, "actor": "unknown",
              "reason": "lockdown state file unreadable: kept in force", "source": "state_file"}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write, fsync, rename over, fsync the directory: after return the bytes survive power loss."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class FileLockdownStore:
    """The open lockdown, as one JSON object in a file; no file means no lockdown."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def save(self, record: dict[str, Any] | None) -> None:
        """Persist the open lockdown (or its end, with None). Raises OSError when it cannot."""
        if record is None:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return
            _fsync_dir(self.path.parent)
            return
        write_atomic(self.path, json.dumps(record, sort_keys=True).encode())

    def load(self) -> dict[str, Any] | None:
        """The open lockdown or None. A file that exists but cannot be read or parsed is still a
        lockdown (the safe reading): the details are lost, not the lockdown."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("lockdown file %s unreadable (%s): lockdown kept in force", self.path, exc)
            return dict(UNREADABLE)
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            log.error("lockdown file %s is corrupt: lockdown kept in force", self.path)
            return dict(UNREADABLE)
        return {**UNREADABLE, **{k: v for k, v in record.items() if isinstance(v, (str, type(None)))}}


class DiskReserve:
    """A ballast file that can be given back to the filesystem when it is full."""

    def __init__(self, path: str | Path, size: int = RESERVE_BYTES):
        self.path = Path(path)
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def release(self) -> bool:
        """Delete the ballast; True when that freed space (there was one to delete)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("could not release the disk reserve %s: %s", self.path, exc)
            return False
        log.error("disk full: released the %d-byte reserve %s for safety events", self.size, self.path)
        return True

    def restore(self) -> bool:
        """Re-create the ballast when the disk has room for it and as much again; True when held."""
        if self.held:
            return True
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            return False
        if free < self.size + max(self.size // 4, 256 * 1024):
            return False
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with open(tmp, "wb") as fh:
                # Real blocks, not a sparse file: the space must be there to give back.
                chunk = b"\0" * (1024 * 1024)
                left = self.size
                while left > 0:
                    left -= fh.write(chunk[:min(left, len(chunk))])
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("could not create the disk reserve %s: %s", self.path, exc)
            return False
        return True
