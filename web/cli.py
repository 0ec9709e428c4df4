"""``entry-buzzer user add|list|remove|passwd`` and ``entry-buzzer make-cert``.

Passwords come from an interactive prompt or a file (``--password-file``), never
from the command line, where they would land in shell history and ``ps`` output.
Run as root (``sudo``), the user commands read the config and its credentials as root,
then work on the panel database as the service user (see ``become_state_owner``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from controller import config as cfg

from .store import PANEL_DB, ROLES, PanelStore, StoreError, generate_password


def _store(settings: cfg.Settings) -> PanelStore:
    return PanelStore(Path(settings.storage.state_dir) / PANEL_DB,
                      idle_minutes=settings.web.session_idle_minutes)


def read_new_password(password_file: str | None) -> str:
    """A new password from ``--password-file`` or typed twice at a prompt, never from argv.
    Shared with the district board's ``user add|passwd`` (district/board/cli.py)."""
    if password_file:
        try:
            return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"--password-file: cannot read {password_file} ({exc})") from None
    if not sys.stdin.isatty():
        raise StoreError("no terminal to prompt on; use --password-file FILE")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise StoreError("the two passwords differ")
    return first


def print_users(users: Iterable[Any]) -> None:
    """``user list``: one tab-separated line per account (username, role, display name)."""
    for u in users:
        print(f"{u.username}\t{u.role}\t{u.display_name}")


def become_state_owner(state_dir: Path) -> str | None:
    """As root, switch to the owner of the state directory (the service user) for good.

    Why: an admin runs ``sudo entry-buzzer user add ...``; the database files it creates
    (panel.sqlite3 and its -wal/-shm) must stay the service's, or the panel can no longer
    write them. Files an older root run left behind are handed back first. The config and
    its credentials were already read as root. Returns the user switched to, or None.
    """
    if os.geteuid() != 0:
        return None
    try:
        st = state_dir.stat()
    except OSError:
        return None
    if st.st_uid == 0:
        return None
    for path in state_dir.glob(PANEL_DB + "*"):
        try:
            if path.lstat().st_uid == 0 and path.is_file():
                os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
        except OSError:
            pass
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    try:
        import pwd
        return pwd.getpwuid(st.st_uid).pw_name
    except (ImportError, KeyError):
        return str(st.st_uid)


def cmd_user(args: argparse.Namespace, load: Callable[[str], cfg.Settings]) -> int:
    settings = load(args.config)
    try:
        if args.action in ("add", "passwd") and not args.username:
            raise StoreError("give the USERNAME")
        # read as the caller
        password = read_new_password(args.password_file) if args.action in ("add", "passwd") else ""
        become_state_owner(Path(settings.storage.state_dir))
        store = _store(settings)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"error: panel database in {settings.storage.state_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "list":
            print_users(store.users())
            return 0
        if not args.username:
            raise StoreError("give the USERNAME")
        if args.action == "add":
            user = store.add_user(args.username, password, args.role, args.name)
            print(f"added {user.username} ({user.role}, shown as {user.display_name!r})")
        elif args.action == "remove":
            store.remove_user(args.username)
            print(f"removed {args.username}; their sessions ended")
        elif args.action == "passwd":
            store.set_password(args.username, password)
            print(f"password changed for {args.username}; their sessions ended")
        return 0
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"error: panel database in {settings.storage.state_dir}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def cmd_make_cert(args: argparse.Namespace) -> int:
    from .certs import make_self_signed
    try:
        cert, key = make_self_signed(args.out, args.host or None, days=args.days)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"certificate: {cert}\nprivate key: {key} (mode 0600)\n\n"
          "behind the nginx front (web.listen = \"unix\"): install them as "
          "/etc/entry-buzzer/credentials/web-tls.crt and web-tls.key (mode 0600), then "
          "systemctl reload nginx\n\nto serve HTTPS without nginx (web.listen = \"tcp\"), add to the config:\n"
          f"[web]\ntls_cert_file = \"{cert.resolve()}\"\ntls_key_file = \"{key.resolve()}\"")
    return 0


def add_commands(sub: Any, load: Callable[[str], cfg.Settings]) -> None:
    """Register the panel's subcommands on the main ``entry-buzzer`` parser."""
    p = sub.add_parser("user", help="manage panel staff accounts: add | list | remove | passwd")
    p.add_argument("action", choices=["add", "list", "remove", "passwd"],
                   help="add an account, list them, remove one, or set a new password")
    p.add_argument("username", nargs="?", help="the account's sign-in name (not needed for list)")
    p.add_argument("--config", default=cfg.DEFAULT_CONFIG, help=f"default {cfg.DEFAULT_CONFIG}")
    p.add_argument("--role", choices=ROLES, default="staff",
                   help="staff (answer the door) or admin (also manage accounts); default staff")
    p.add_argument("--name", help="display name shown in the audit log (default: the username)")
    p.add_argument("--password-file", help="read the password from this file instead of prompting")
    p.set_defaults(func=lambda a: cmd_user(a, load))

    p = sub.add_parser("make-cert", help="create a self-signed certificate and key for the panel's HTTPS")
    p.add_argument("--out", required=True, help="directory for panel-cert.pem and panel-key.pem")
    p.add_argument("--host", action="append", help="host name or IP the panel is reached by (repeatable)")
    p.add_argument("--days", type=int, default=825, help="validity in days (default 825)")
    p.set_defaults(func=cmd_make_cert)


def ensure_sim_admin(settings: cfg.Settings) -> str:
    """Simulated campus: make sure ``admin`` exists with a fresh generated password; return it."""
    store = _store(settings)
    try:
        password = generate_password()
        if store.get_user("admin") is None:
            store.add_user("admin", password, "admin", "Admin (simulated campus)")
        else:
            store.set_password("admin", password)
        return password
    finally:
        store.close()
