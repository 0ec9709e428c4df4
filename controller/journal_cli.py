"""``entry-buzzer journal accept-new``: an admin accepts a new journal after ``journal_lost``.

Why a command as well as the panel: when the journal was lost the panel may be the thing that
is broken. The command works on a stopped controller only (it writes the journal itself; two
writers would race for ``seq``): with the controller running it says to use the panel's admin
page or to stop the service first. The acceptance is journaled (``journal_accepted``, source
``cli``) before the installation identity (``journal.id``) is rewritten.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any, Callable

from . import config as cfg
from . import events as ev
from .identity import JournalIdentity, controller_running, identity_paths
from .journal import Journal, JournalError

JOURNAL_FILE = "journal.sqlite3"


def cmd_accept_new(args: argparse.Namespace, load: Callable[..., cfg.Settings]) -> int:
    settings = load(args.config, ("site", "storage"))
    state_dir = Path(settings.storage.state_dir)
    if controller_running(state_dir):
        print("error: the controller is running: accept the new journal on the panel's admin page, "
              "or stop the service first (the door stays locked while it is stopped)", file=sys.stderr)
        return 1
    if not (state_dir / JOURNAL_FILE).is_file():
        print(f"error: no journal in {state_dir}: start the controller once first", file=sys.stderr)
        return 1
    actor = (args.actor or f"{getpass.getuser()} (command line)")[:100]
    try:
        journal = Journal(state_dir / JOURNAL_FILE, settings.site.campus, settings.site.door)
    except JournalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        identity = JournalIdentity(identity_paths(state_dir, settings.source))
        previous = identity.previous()
        if journal.epoch in previous or not previous:
            identity.write(journal.epoch)
            print(f"journal {journal.epoch} is this installation's; nothing to accept")
            return 0
        journal.append(ev.JOURNAL_ACCEPTED, actor=actor, source="cli", epoch=journal.epoch,
                       previous_epochs=previous, reason="accepted with entry-buzzer journal accept-new")
        problems = identity.write(journal.epoch)
    except JournalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()
        _give_back(state_dir)
    if problems and problems[0].startswith(str(identity.paths[0])):
        print(f"error: journal.id not written: {problems[0]}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"warning: identity copy not written: {problem}", file=sys.stderr)
    print(f"new journal {journal.epoch} accepted by {actor} (was {', '.join(previous)}); "
          "start the controller")
    return 0


def _give_back(state_dir: Path) -> None:
    """Run as root on an installed system: leave what we wrote owned by the service user (the
    owner of the state directory), or the controller could not open its journal."""
    if os.geteuid() != 0:
        return
    st = state_dir.stat()
    for name in ("journal.id", JOURNAL_FILE, f"{JOURNAL_FILE}-wal", f"{JOURNAL_FILE}-shm"):
        try:
            os.chown(state_dir / name, st.st_uid, st.st_gid)
        except FileNotFoundError:
            continue
        except OSError as exc:
            print(f"warning: cannot give {name} back to the service user: {exc}", file=sys.stderr)


def add_commands(sub: Any, load: Callable[..., cfg.Settings]) -> None:
    p = sub.add_parser("journal", help="journal identity: accept a new journal after journal_lost")
    jsub = p.add_subparsers(dest="journal_command", required=True)
    a = jsub.add_parser("accept-new", help="accept the journal in use as this installation's (controller stopped)")
    a.add_argument("--config", default=cfg.DEFAULT_CONFIG, help=f"default {cfg.DEFAULT_CONFIG}")
    a.add_argument("--actor", help="name recorded in the journal (default: the login name)")
    a.set_defaults(func=lambda args: cmd_accept_new(args, load))
