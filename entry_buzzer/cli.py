"""Command line: ``entry-buzzer run|simulate|check-config|relock|selftest|user|make-cert``.

Part of the composition root (this package knows every part: controller, panel, MQTT link).

Exit codes: 0 ok, 2 bad configuration or usage, 1 runtime failure. Errors are
one clear line each, never a stack trace.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from controller import config as cfg

log = logging.getLogger("entry-buzzer")


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load(path: str, sections: tuple[str, ...] | None = None) -> cfg.Settings:
    try:
        return cfg.load(path) if sections is None else cfg.load_sections(path, sections)
    except cfg.ConfigError as exc:
        for line in exc.errors:
            print(f"error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # hostile input must still give one line, never a traceback
        print(f"error: {path}: cannot be loaded ({type(exc).__name__})", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args.file or args.config)
    print(settings.summary())
    if cfg.plain_http_exposed(settings):     # allowed only with web.allow_plain_http = true
        print(f"warning: the panel serves PLAIN HTTP on {settings.web.host}:{settings.web.port} "
              "(web.allow_plain_http = true): passwords and session cookies cross the network "
              "unencrypted", file=sys.stderr)
    print("config OK")
    return 0


def cmd_relock(args: argparse.Namespace) -> int:
    """Drive the strike locked without starting the daemon (systemd ExecStopPost backstop).

    Reads only [gpio] and falls back to the last-known-good strike settings: see controller/relock.py.
    """
    from controller.relock import main as relock_main
    return relock_main(args.config)


def cmd_selftest(args: argparse.Namespace) -> int:
    """Check the door installation interactively (see controller/selftest.py)."""
    settings = _load(args.config, ("site", "gpio", "door", "camera", "storage"))
    from controller.selftest import SelfTest
    test = SelfTest(settings, buzzer_wait=args.buzzer_wait, strike=not args.no_strike)
    test.run()
    print(test.summary())
    return 0 if test.passed else 1


def cmd_run(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    _setup_logging(args.verbose)
    from controller.daemon import exit_now_if_stuck

    from .compose import run
    try:
        code = run(settings)
    except Exception as exc:
        log.error("controller could not start: %s", exc)
        code = 1
    return exit_now_if_stuck(code)   # a stop abandoned past its budget must not hold the exit


def cmd_simulate(args: argparse.Namespace) -> int:
    from controller import simulate as sim  # lazy: it pulls in the whole daemon

    from .simulation import run_simulation
    _setup_logging(args.verbose)
    if args.district:
        return _district_demo(args)
    base = _load(args.config) if args.config else cfg.Settings()
    if not args.no_web and not _port_free("127.0.0.1", args.port):
        print(f"error: port {args.port} on 127.0.0.1 is already in use (another simulation or server?); "
              f"pick another with --port, e.g. --port {args.port + 1}", file=sys.stderr)
        return 2
    temporary = not args.state_dir
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="entry-buzzer-sim-"))
    try:
        mqtt_on = not args.no_mqtt and (args.mqtt_port is not None or _broker_reachable("127.0.0.1", 1883))
        settings = sim.simulated_settings(base, state_dir, web_port=args.port, mqtt=mqtt_on,
                                          mqtt_port=args.mqtt_port or 1883, web=not args.no_web)
        code = run_simulation(settings, console_enabled=args.console or sys.stdin.isatty(),
                              duration=args.duration, as_json=args.json)
    finally:
        if temporary:    # a throw-away campus leaves nothing behind; --state-dir is kept
            shutil.rmtree(state_dir, ignore_errors=True)
    from controller.daemon import exit_now_if_stuck
    return exit_now_if_stuck(code)


def _district_demo(args: argparse.Namespace) -> int:
    """The optional district demo (district/demo.py): needs the district extra and PostgreSQL."""
    if not _port_free("127.0.0.1", args.port):
        print(f"error: port {args.port} on 127.0.0.1 is already in use; pick another with --port", file=sys.stderr)
        return 2
    try:
        from district.demo import run_demo  # composition root: the only place that knows the district
    except ImportError as exc:
        print(f"error: the district demo needs the district extra ({exc}); run scripts/district-demo.sh",
              file=sys.stderr)
        return 2
    return run_demo(args.district, port=args.port, duration=args.duration)


def _port_free(host: str, port: int) -> bool:
    """Whether the panel could bind ``port`` now (checked first: a busy port is a hint, not a traceback)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _broker_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entry-buzzer", description="Entry buzzer and door access controller")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the door controller daemon")
    p.add_argument("--config", default=cfg.DEFAULT_CONFIG, help=f"default {cfg.DEFAULT_CONFIG}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate", help="run a simulated campus (mock GPIO, simulated camera)")
    p.add_argument("--config", help="start from this config (gpio/camera/storage are simulated)")
    p.add_argument("--state-dir", help="state directory (default: a new temp dir)")
    p.add_argument("--port", type=int, default=8080, help="panel port on 127.0.0.1 (default 8080)")
    p.add_argument("--mqtt-port", type=int, help="broker port on 127.0.0.1 (default: 1883 when reachable)")
    p.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker")
    p.add_argument("--no-web", action="store_true", help="do not serve the panel")
    p.add_argument("--console", action="store_true", help="read commands from stdin (default when a TTY)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (demos, smoke tests)")
    p.add_argument("--json", action="store_true", help="console answers as one JSON object per line (scripts)")
    p.add_argument("--district", type=int, metavar="N", default=0,
                   help="district demo: N simulated campuses, a private broker and PostgreSQL, the recorder "
                        "and the district board on --port (see scripts/district-demo.sh)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("check-config", help="validate a config file: exit 0 with a summary, or 2 with every error")
    p.add_argument("file", nargs="?", help=f"the config file (default {cfg.DEFAULT_CONFIG})")
    p.add_argument("--config", default=cfg.DEFAULT_CONFIG, help="the same, as an option")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("relock", help="drive the strike locked without starting the daemon")
    _relock_arguments(p)

    p = sub.add_parser("selftest", help="check the installation at the door: buzzer, LEDs, strike, camera")
    p.add_argument("--config", default=cfg.DEFAULT_CONFIG, help=f"default {cfg.DEFAULT_CONFIG}")
    p.add_argument("--buzzer-wait", type=float, default=20.0, help="seconds to wait for a press (default 20)")
    p.add_argument("--no-strike", action="store_true", help="never offer to pulse the strike")
    p.set_defaults(func=cmd_selftest)

    from web.cli import add_commands  # panel: user accounts and make-cert
    add_commands(sub, _load)
    from controller.journal_cli import add_commands as add_journal_commands  # journal accept-new
    add_journal_commands(sub, _load)
    return parser


def _relock_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=cfg.DEFAULT_CONFIG, help=f"default {cfg.DEFAULT_CONFIG}")
    p.set_defaults(func=cmd_relock)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["relock"]:
        # The backstop first, before the full parser: that one imports the panel's commands
        # (Flask), and relock must work where Flask, paho or the panel are broken.
        parser = argparse.ArgumentParser(prog="entry-buzzer relock",
                                         description="drive the strike locked without starting the daemon")
        _relock_arguments(parser)
        args = parser.parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
