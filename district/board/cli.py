"""``entry-buzzer-board serve|check-config|user add|list|remove|passwd``.

Passwords come from a prompt or ``--password-file``, never from the command line (shell
history, ``ps``). Errors are one clear line and exit code 2 (usage, config) or 1 (runtime),
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Sequence

import psycopg

from controller.config import ConfigError
from web.cli import print_users, read_new_password

from . import config as cfg
from .accounts import ROLES, AccountError, BoardStore, apply_schema

DEFAULT_CONFIG = "/etc/entry-buzzer/district.toml"


def _load(path: str) -> cfg.BoardSettings:
    try:
        return cfg.load(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_user(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    from . import open_pool
    logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)   # one line below says why, not five
    try:
        pool = open_pool(settings, open_seconds=10.0)
    except Exception as exc:   # psycopg_pool raises PoolTimeout with the libpq reason inside
        print(f"error: cannot connect to the district database ({exc})", file=sys.stderr)
        return 1
    try:
        apply_schema(pool)
        store = BoardStore(pool)
        if args.action == "list":
            print_users(store.users())
        elif args.action == "add":
            user = store.add_user(args.username, read_new_password(args.password_file), args.role, args.display_name)
            store.audit("cli", "account_added", None, "", account=user.username, role=user.role)
            print(f"added {user.username} ({user.role})")
        elif args.action == "passwd":
            store.set_password(args.username, read_new_password(args.password_file))
            store.audit("cli", "account_password", None, "", account=args.username)
            print(f"password changed for {args.username}; their sessions were ended")
        elif args.action == "remove":
            if not store.remove_user(args.username):
                raise AccountError(f"username: no account {args.username!r}")
            store.audit("cli", "account_removed", None, "", account=args.username)
            print(f"removed {args.username}")
    except AccountError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"error: database: {exc}", file=sys.stderr)
        return 1
    finally:
        pool.close()
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    s = _load(args.config)
    print(f"board: {s.web.listen} {s.web.socket_path if s.web.listen == 'unix' else f'{s.web.host}:{s.web.port}'}; "
          f"broker {s.mqtt.host}:{s.mqtt.port} as {s.mqtt.username or '(anonymous)'}; "
          f"{len(s.campuses)} campus links; rings highlighted after {s.ring_alert_seconds:g} s")
    print("config OK")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import BoardServer
    try:
        server = BoardServer(settings).start()
    except Exception as exc:
        print(f"error: the board could not start ({exc})", file=sys.stderr)
        return 1
    print(f"district board: {server.url}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entry-buzzer-board", description="The district board (web).")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"district config (default {DEFAULT_CONFIG})")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the board").set_defaults(func=cmd_serve)
    sub.add_parser("check-config", help="check the config and exit").set_defaults(func=cmd_check_config)
    u = sub.add_parser("user", help="board accounts (viewer, operator)")
    u.add_argument("action", choices=("add", "list", "remove", "passwd"))
    u.add_argument("username", nargs="?")
    u.add_argument("--role", choices=ROLES, default="viewer")
    u.add_argument("--display-name")
    u.add_argument("--password-file")
    u.set_defaults(func=cmd_user)
    return p


def _register_with_district_cli() -> None:
    """``entry-buzzer-district board --config FILE`` serves the board too (district/cli.py
    dispatches to subcommands that register themselves)."""
    try:
        from district.cli import command
    except ImportError:
        return

    @command("board", "serve the district board (accounts: entry-buzzer-board user ...)")
    def _board(args: argparse.Namespace, _settings: object) -> int:
        return cmd_serve(args)


_register_with_district_cli()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "action", None) in ("add", "remove", "passwd") and not args.username:
        print("error: give the USERNAME", file=sys.stderr)
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
