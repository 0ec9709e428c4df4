"""``entry-buzzer-district``: the district's console script.

    entry-buzzer-district recorder --config /etc/entry-buzzer/district.toml
    entry-buzzer-district check-config --config ...
    entry-buzzer-district init-db --config ...

Subcommands register themselves in ``COMMANDS`` (the board adds ``board``), so this file
stays a thin dispatcher. Config and database errors end with one clear line, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Callable

from district import config

COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace, config.Settings], int]]] = {}


def command(name: str, help_text: str) -> Callable[[Callable[[argparse.Namespace, config.Settings], int]],
                                                   Callable[[argparse.Namespace, config.Settings], int]]:
    def register(fn: Callable[[argparse.Namespace, config.Settings], int]) -> Callable[..., int]:
        COMMANDS[name] = (help_text, fn)
        return fn
    return register


@command("check-config", "load the config and report the first bad key")
def _check(_args: argparse.Namespace, _settings: config.Settings) -> int:
    print("config OK")
    return 0


@command("init-db", "create or complete the district schema and register the configured campuses")
def _init_db(_args: argparse.Namespace, settings: config.Settings) -> int:
    from district import db

    db.apply_schema(settings.database.dsn)
    db.add_campuses(settings.database.dsn, settings.recorder.campuses)
    print("schema ready")
    return 0


@command("recorder", "record every campus's MQTT feed into PostgreSQL")
def _recorder(_args: argparse.Namespace, settings: config.Settings) -> int:
    from district.recorder.service import Recorder, totals_line

    recorder = Recorder(settings)
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    recorder.start()
    logging.getLogger("district.recorder").info("recorder started (client id %s)", settings.broker.client_id)
    last = time.monotonic()
    log = logging.getLogger("district.recorder")
    while not stopping.wait(1.0):
        if not recorder.healthy():
            log.error("a recorder thread died; exiting so the service manager restarts it (nothing"
                      " unacknowledged is lost)")
            recorder.stop()
            return 1
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("%s", totals_line(recorder))
    recorder.stop()
    log.info("stopped: %s", totals_line(recorder))
    return 0


@command("retire-recorder", "end this recorder instance's broker session (after stopping it for good)")
def _retire(_args: argparse.Namespace, settings: config.Settings) -> int:
    import queue

    from district.recorder.link import RecorderLink

    link = RecorderLink(settings.broker, config.read_secret(settings.broker.password_file), queue.Queue())
    if not link.retire_session():
        print("entry-buzzer-district: the broker did not accept the connection", file=sys.stderr)
        return 1
    print(f"session of {settings.broker.client_id} ended: the shared subscription no longer queues for it")
    return 0


@command("rejected", "what the recorder refused: totals per reason and the newest kept payloads")
def _rejected(_args: argparse.Namespace, settings: config.Settings) -> int:
    from district import db

    with db.connect(settings.database.dsn) as conn:
        totals = conn.execute("SELECT reason, count, last_at FROM rejected_totals ORDER BY count DESC").fetchall()
        newest = conn.execute("SELECT at, reason, topic, size, detail, payload FROM rejected_payloads"
                              " ORDER BY id DESC LIMIT 20").fetchall()
    if not totals:
        print("nothing refused")
        return 0
    for reason, count, last_at in totals:
        print(f"{reason:16} {count:>10}  last {last_at:%Y-%m-%d %H:%M:%S %Z}")
    print("newest kept payloads:")
    for at, reason, topic, size, detail, payload in newest:
        preview = bytes(payload[:80]).decode("utf-8", "replace").replace("\n", " ")
        print(f"  {at:%Y-%m-%d %H:%M:%S} {reason} {topic} ({size} bytes) {detail}\n    {preview!r}")
    return 0


def _load_board_commands() -> None:
    try:   # the board helper's subcommands, when that package is present
        import district.board.cli  # noqa: F401  (registers the board subcommands)
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    _load_board_commands()
    parser = argparse.ArgumentParser(prog="entry-buzzer-district", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, _fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="district TOML file")
        p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
        p.add_argument("--client-id", help="override broker.client_id (one config, several instances)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = config.load(args.config)
        if args.client_id is not None:
            settings = config.from_dict({**config.to_dict(settings), "broker": {
                **config.to_dict(settings)["broker"], "client_id": args.client_id}})
        return COMMANDS[args.command][1](args, settings)
    except config.ConfigError as exc:
        print(f"entry-buzzer-district: config error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # psycopg errors and the like: one line, no traceback
        import psycopg

        if isinstance(exc, psycopg.Error):
            print(f"entry-buzzer-district: database error: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
