"""The journal's identity, kept outside the database, so a lost journal is never a first boot.

Why: a truncated, deleted or swapped ``journal.sqlite3`` used to open as a fresh journal,
lifting the lockdown, restarting ``seq`` at 1 and claiming ``previous_stop: none``. Now every
journal has an id (its *epoch*, stored in the database and carried by every event), and the
installation remembers the id of the journal it is using in ``journal.id`` files: one in the
state directory and a copy beside the config file: in its ``identity/`` folder when that
exists (the installer creates ``/etc/entry-buzzer/identity`` owned by the service user, the
only part of /etc the unit lets it write), else in the config's own folder when writable.
So wiping the whole state directory is still a lost journal, not a first boot.

At start-up:
- no identity file anywhere: first boot (or an upgrade): the journal's id is written;
- the journal's id matches a copy: fine (missing copies are repaired);
- otherwise the journal is *lost* (missing or empty: a new one was just created) or *foreign*
  (another installation's): the controller starts locked, refuses unlocks and raises the
  ``journal_lost`` alarm until an admin accepts the new journal (panel admin page or
  ``entry-buzzer journal accept-new``), which is journaled.

The daemon also holds an advisory lock on ``controller.lock`` in the state directory, so the
command line can tell whether a controller is running on that journal.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path
from typing import IO, Any

from .durable import write_atomic

log = logging.getLogger(__name__)

ID_FILE = "journal.id"
LOCK_FILE = "controller.lock"
_ID = re.compile(r"^[0-9a-f]{32}$")


def identity_paths(state_dir: Path, config_source: str | None) -> list[Path]:
    """Where the identity lives: the state directory first, then beside the config file."""
    paths = [Path(state_dir) / ID_FILE]
    if config_source and not config_source.startswith("<"):
        config_dir = Path(config_source).resolve().parent
        beside = (config_dir / "identity" / ID_FILE if (config_dir / "identity").is_dir()
                  else config_dir / ID_FILE)
        if beside not in paths and beside.parent != Path(state_dir).resolve():
            paths.append(beside)
    return paths


class JournalIdentity:
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def known(self) -> dict[Path, str]:
        """The ids in the copies that exist and can be read (an unreadable copy is reported)."""
        found: dict[Path, str] = {}
        for path in self.paths:
            try:
                text = path.read_text(encoding="ascii").strip()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                log.error("journal identity %s unreadable: %s", path, exc)
                found[path] = "unreadable"
                continue
            found[path] = text if _ID.match(text) else "invalid"
        return found

    def write(self, epoch: str) -> list[str]:
        """Write the id to every copy; returns the problems (the state copy failing is the bad one)."""
        problems = []
        for path in self.paths:
            try:
                if path.read_text(encoding="ascii").strip() == epoch:
                    continue
            except (OSError, UnicodeDecodeError):
                pass
            try:
                write_atomic(path, (epoch + "\n").encode("ascii"))
            except OSError as exc:
                problems.append(f"{path}: {exc}")
                # the state copy must be written; the one beside the config is a bonus (an
                # installed /etc is read-only to the service)
                (log.error if path == self.paths[0] else log.info)(
                    "journal identity copy %s not written: %s", path, exc)
        return problems

    def check(self, epoch: str, created: bool) -> str | None:
        """None when the journal is the installation's; else why it is lost. Repairs copies."""
        known = self.known()
        if not known:
            self.write(epoch)
            return None
        if epoch in known.values():
            self.write(epoch)
            return None
        previous = sorted({v for v in known.values() if _ID.match(v)})
        what = "missing or empty (a new journal was created)" if created else "not this installation's"
        return f"journal {what}; expected epoch {', '.join(previous) or 'unknown'}"

    def previous(self) -> list[str]:
        return sorted({v for v in self.known().values() if _ID.match(v)})


def hold_lock(state_dir: Path) -> IO[Any] | None:
    """Take the controller's advisory lock (released when the process ends). Never fails the
    start: a controller that cannot lock still runs, it only says so."""
    try:
        fh = open(Path(state_dir) / LOCK_FILE, "a+")
    except OSError as exc:
        log.warning("cannot open %s: %s", LOCK_FILE, exc)
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        log.warning("another controller holds %s in %s", LOCK_FILE, state_dir)
    return fh


def controller_running(state_dir: Path) -> bool:
    """True when a controller process holds the state directory's lock."""
    path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
