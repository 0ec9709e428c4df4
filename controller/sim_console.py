"""The simulated campus console: a person (or a script with ``--json``) drives the station.

Why its own module: the console's words are an interface. Answers are plain sentences
("Approved: the door is unlocked."), never Python reprs, and with ``--json`` one JSON object
per line so scripts need not parse English. ``exit`` is the request-to-exit sensor, as the
help says; only ``quit`` (or end of input) stops the simulation.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
from typing import Any, Callable, TextIO

from . import labels
from .vocabulary import DecisionCode

HELP = """commands:
  press                     press the buzzer (drives the mock GPIO pin)
  approve [ID] [NAME]       approve the pending ring (default: the current one)
  deny [ID] [NAME]          deny the pending ring
  unlock [NAME]             staff 'unlock now'
  lockdown start [LEVEL]    start a lockdown: LEVEL lockdown (default) or secure; again to change it
  lockdown end              end the lockdown
  panic                     press the desk panic (duress) button (drives its mock GPIO pin)
  open | close              open or close the door (door contact)
  exit                      someone inside walks up to leave (request-to-exit sensor)
  camera hang|fail|ok       the next capture never returns | fails | the camera works again
  status                    door, ring, strike and LED state
  events [N]                the last N journal events (default 10)
  help                      this list
  quit                      stop the simulated campus"""

STAFF = "Console Staff"
COMMANDS = ("help", "press", "approve", "deny", "unlock", "lockdown", "panic", "exit", "open", "close", "camera",
            "status", "events")

DONE = {"approve": "Approved: the door is unlocked for the visitor.",
        "deny": "Denied: the visitor was told no.",
        "unlock": "Unlocked now: the door is open for its unlock time.",
        "lockdown start": "Lockdown started: entry is refused until it ends.",
        "lockdown end": "Lockdown ended."}


def decision_sentence(what: str, d: Any) -> str:
    """A core Decision as one sentence: what happened, or why nothing did."""
    if d.ok and d.code == DecisionCode.OK and d.reason.startswith("level changed"):
        return f"Lockdown {d.reason}: entry is still refused."
    if d.ok and d.code == DecisionCode.OK:
        return DONE.get(what, "Done.")
    if d.ok:
        return f"Nothing to do: {d.reason}."
    return f"Refused ({what}): {d.reason}."


def status_sentence(s: dict[str, Any]) -> str:
    ring = s.get("ring")
    ring_text = (f"a ring is waiting ({ring['presses']} press{'es' if ring['presses'] != 1 else ''}, "
                 f"{ring['seconds_left']:.0f} s left, id {ring['request_id']})" if ring else "no ring waiting")
    leds = s.get("leds") or {}
    led_text = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in leds.items()) or "none"
    lockdown = (f"{labels.level(s['lockdown'].get('level') or 'lockdown')} active (entry refused)"
                if s.get("lockdown") else "no lockdown")
    alarms = ", ".join(labels.alarm(a) for a in s.get("alarms") or {}) or "no alarms"
    fault = f" Fault: {s['fault']}." if s.get("fault") else ""
    return (f"Door {s.get('door')}; strike pin {'ON (unlocked)' if s.get('strike_pin') else 'off (locked)'}; "
            f"{ring_text}; {lockdown}; {alarms}. LEDs: {led_text}.{fault}")


class Console:
    """One command line in, one answer out (a sentence, or a JSON object with ``--json``)."""

    def __init__(self, controller: Any, station: Any, as_json: bool = False):
        self.controller, self.station, self.as_json = controller, station, as_json

    def answer(self, line: str) -> tuple[bool, list[str]]:
        """(keep going, the lines to print) for one command line."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            return True, [self._out({"ok": False, "error": str(exc)}, f"Could not read that: {exc}.")]
        if not words:
            return True, []
        verb, rest = words[0].lower(), words[1:]
        if verb == "quit":
            return False, [self._out({"ok": True, "quit": True}, "Stopping the simulated campus.")]
        if verb not in COMMANDS:
            return True, [self._out({"ok": False, "error": f"unknown command {verb!r}"},
                                    f"Unknown command {verb!r}; type 'help' for the list.")]
        handler: Callable[[list[str]], list[str]] = getattr(self, "_" + verb)
        return True, handler(rest)

    def _out(self, data: dict[str, Any], sentence: str) -> str:
        return json.dumps(data, sort_keys=True, default=str) if self.as_json else sentence

    def _decision(self, what: str, d: Any) -> list[str]:
        return [self._out({"ok": d.ok, "code": d.code, "reason": d.reason, "request_id": d.request_id},
                          decision_sentence(what, d))]

    def _pending(self) -> str | None:
        return (self.controller.core.status()["ring"] or {}).get("request_id")

    # ---- commands
    def _help(self, rest: list[str]) -> list[str]:
        return [self._out({"ok": True, "help": HELP}, HELP)]

    def _press(self, rest: list[str]) -> list[str]:
        self.station.press()
        return [self._out({"ok": True, "pressed": True}, "Buzzer pressed.")]

    def _ring_action(self, verb: str, rest: list[str]) -> list[str]:
        rid = rest[0] if rest else self._pending()
        if not rid:
            return [self._out({"ok": False, "code": "no_ring", "reason": f"no ring to {verb}"},
                              f"There is no ring to {verb}. Type 'press' to ring first.")]
        return self._decision(verb, getattr(self.controller, verb)(rid, rest[1] if len(rest) > 1 else STAFF))

    def _approve(self, rest: list[str]) -> list[str]:
        return self._ring_action("approve", rest)

    def _deny(self, rest: list[str]) -> list[str]:
        return self._ring_action("deny", rest)

    def _unlock(self, rest: list[str]) -> list[str]:
        return self._decision("unlock", self.controller.unlock_now(rest[0] if rest else STAFF, "console"))

    def _lockdown(self, rest: list[str]) -> list[str]:
        if not rest or rest[0] not in ("start", "end") or (rest[0] == "end" and len(rest) > 1):
            return [self._out({"ok": False, "error": "usage: lockdown start [secure|lockdown] | lockdown end"},
                              "Say 'lockdown start', 'lockdown start secure' or 'lockdown end'.")]
        if rest[0] == "end":
            return self._decision("lockdown end", self.controller.end_lockdown(STAFF, "console", "panel"))
        level = rest[1].lower() if len(rest) > 1 else "lockdown"
        return self._decision("lockdown start", self.controller.start_lockdown(STAFF, "console", "panel", level=level))

    def _panic(self, rest: list[str]) -> list[str]:
        if self.station.gpio.panic_pin is None:
            return [self._out({"ok": False, "error": "no gpio.panic_pin configured"},
                              "No desk panic button is configured (gpio.panic_pin).")]
        self.station.press_panic()
        return [self._out({"ok": True, "panic": True},
                          "Desk panic button pressed: panic alarm raised (acknowledge it on the panel).")]

    def _exit(self, rest: list[str]) -> list[str]:
        self.station.request_exit()
        return [self._out({"ok": True, "exit_requested": True},
                          "Exit requested: someone inside is at the door (request-to-exit sensor).")]

    def _door(self, is_open: bool) -> list[str]:
        self.station.set_door(is_open)
        word = "opened" if is_open else "closed"
        return [self._out({"ok": True, "door": word}, f"Door {word}.")]

    def _open(self, rest: list[str]) -> list[str]:
        return self._door(True)

    def _close(self, rest: list[str]) -> list[str]:
        return self._door(False)

    def _camera(self, rest: list[str]) -> list[str]:
        if not rest or rest[0] not in ("hang", "fail", "ok"):
            return [self._out({"ok": False, "error": "usage: camera hang|fail|ok"},
                              "Say 'camera hang', 'camera fail' or 'camera ok'.")]
        camera = self.controller.snapshots.camera
        camera.delay_seconds = 10 ** 9 if rest[0] == "hang" else 0.0
        camera.fail_next = "simulated camera failure" if rest[0] == "fail" else None
        words = {"hang": "The next capture will never return.", "fail": "The next capture will fail.",
                 "ok": "The camera works again."}
        return [self._out({"ok": True, "camera": rest[0]}, words[rest[0]])]

    def _status(self, rest: list[str]) -> list[str]:
        status = {**self.controller.status(), "strike_pin": self.station.strike_on, "leds": self.station.leds()}
        return [self._out(status, status_sentence(status))]

    def _events(self, rest: list[str]) -> list[str]:
        n = min(int(rest[0]), 1000) if rest and rest[0].isdigit() else 10
        events = list(reversed(self.controller.journal.query(limit=n)))
        if self.as_json:
            return [e.to_json() for e in events]
        if not events:
            return ["No events yet."]
        return [f"#{e.seq} {e.ts.astimezone().strftime('%H:%M:%S')}  {labels.describe(e.to_dict())}" for e in events]


def console(controller: Any, station: Any, stop: threading.Event, stream: TextIO = sys.stdin,
            out: TextIO = sys.stdout, as_json: bool = False) -> None:
    """Read commands until ``quit`` or end of input, then stop the simulation."""
    c = Console(controller, station, as_json)
    if not as_json:
        print(HELP, file=out, flush=True)
    for line in stream:
        go_on, lines = c.answer(line)
        for text in lines:
            print(text, file=out)
        out.flush()
        if not go_on:
            break
    stop.set()
