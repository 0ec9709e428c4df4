"""The simulated campus console and the `simulate` command line: `exit` is the request-to-exit
sensor (only `quit` stops), answers are sentences (or JSON), a busy port is a one-line hint,
a TLS config gives an https:// link, and a temporary state directory does not outlive the run."""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

from controller import config as cfg
from controller import events as ev
from controller import simulate as sim
from controller.sim_console import console
from entry_buzzer.cli import build_parser
from entry_buzzer.simulation import panel_links

ROOT = Path(__file__).resolve().parents[1]


def run_console(controller, text: str, as_json: bool = False) -> tuple[list[str], threading.Event]:
    out, stop = io.StringIO(), threading.Event()
    console(controller, controller.station, stop, stream=io.StringIO(text), out=out, as_json=as_json)
    return out.getvalue().splitlines(), stop


def test_exit_is_the_request_to_exit_sensor_and_quit_stops(controller):
    lines, stop = run_console(controller, "exit\nopen\nclose\nquit\npress\n")
    kinds = [(e.type, e.data.get("egress")) for e in controller.journal.query(limit=50)]
    assert (ev.DOOR_OPENED, True) in kinds                  # the door opened as free egress
    assert "forced_open" not in controller.core.status()["alarms"]
    assert any("Exit requested" in line for line in lines)
    assert lines[-1] == "Stopping the simulated campus."   # quit ended it: 'press' after it never ran
    assert ev.BUZZER_PRESSED not in [k for k, _ in kinds]
    assert stop.is_set()


def test_answers_are_sentences_not_python_objects(controller):
    lines, _ = run_console(controller, "approve\npress\napprove\nstatus\nevents 3\nbogus\nring_action\n_out\n")
    text = "\n".join(lines)
    assert "Decision(" not in text and "{'" not in text and "malformed" not in text
    assert "There is no ring to approve. Type 'press' to ring first." in lines
    assert "Approved: the door is unlocked for the visitor." in lines
    status = [line for line in lines if line.startswith("Door ")][0]
    assert "strike pin ON (unlocked)" in status and "LEDs:" in status
    assert any("Door unlocked by Console Staff (visitor approved)" in line for line in lines)
    assert "Unknown command 'bogus'; type 'help' for the list." in lines
    assert "Unknown command 'ring_action'; type 'help' for the list." in lines   # no internals reachable
    assert "Unknown command '_out'; type 'help' for the list." in lines


def test_json_answers_for_scripts(controller):
    lines, _ = run_console(controller, "deny\npress\nstatus\ndeny\n", as_json=True)
    answers = [json.loads(line) for line in lines]
    assert answers[0] == {"ok": False, "code": "no_ring", "reason": "no ring to deny"}
    assert answers[2]["ring"]["presses"] == 1 and answers[2]["strike_pin"] is False
    assert answers[3]["ok"] is True and answers[3]["code"] == "ok"


def test_every_option_of_every_subcommand_has_help():
    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {action.dest}")

    walk(build_parser(), "entry-buzzer")
    assert missing == []


def test_tls_config_prints_an_https_link(tmp_path):
    base = cfg.with_overrides(cfg.Settings(), web={"tls_cert_file": "/x/cert.pem", "tls_key_file": "/x/key.pem"})
    links = panel_links(sim.simulated_settings(base, tmp_path, web_port=8443))
    assert links == "panel: https://127.0.0.1:8443/  visitor station: https://127.0.0.1:8443/sim"
    assert panel_links(sim.simulated_settings(cfg.Settings(), tmp_path, web_port=8081)).startswith(
        "panel: http://127.0.0.1:8081/")


def _simulate(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "entry_buzzer", "simulate", "--no-mqtt", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_busy_port_is_a_one_line_hint(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = _simulate("--port", str(port), "--duration", "1", tmp=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert f"port {port}" in proc.stderr and "--port" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_temporary_state_dir_is_removed_but_a_given_one_is_kept(tmp_path):
    proc = _simulate("--no-web", "--duration", "1", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "state dir:" in proc.stdout
    assert not list(tmp_path.glob("entry-buzzer-sim-*"))
    kept = tmp_path / "kept"
    proc = _simulate("--no-web", "--duration", "1", "--state-dir", str(kept), tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (kept / "journal.sqlite3").exists()


def test_lockdown_levels_and_the_desk_panic_button_from_the_console(settings, pin_factory):
    from tests.support_web import build_controller, stop_controller
    controller = build_controller(cfg.with_overrides(settings, gpio={"panic_pin": 6}), pin_factory)  # noqa: F811
    try:
        lines, _ = run_console(controller, "lockdown start secure\nstatus\nlockdown start shelter\n"
                                           "lockdown start\npanic\nstatus\nlockdown end\nquit\n")
        check_levels_and_panic(controller, lines)
    finally:
        stop_controller(controller)


def check_levels_and_panic(controller, lines):  # noqa: F811
    from controller.sim_console import HELP
    lines = [line for line in lines if line not in HELP.splitlines()]      # the help printed at start
    assert lines[0] == "Lockdown started: entry is refused until it ends."
    assert "SECURE active (entry refused)" in lines[1]
    assert lines[2].startswith("Refused (lockdown start): unknown lockdown level 'shelter'")
    assert lines[3] == "Lockdown level changed from secure to lockdown: entry is still refused."
    assert lines[4].startswith("Desk panic button pressed")
    assert "LOCKDOWN active" in lines[5] and "PANIC" in lines[5]
    assert lines[6] == "Lockdown ended."
    raised = controller.journal.query(types=[ev.ALARM_RAISED], limit=5)
    assert [(e.data["alarm"], e.data["source"]) for e in raised] == [("panic", "desk_button")]
