"""Nothing lost: broker outages and daemon SIGKILL against a real Mosquitto.

The district subscriber keeps a persistent session (clean_session=False) on a
broker with persistence on, like a district bridge: messages published while
it is reconnecting wait for it at the broker.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from controller import events as ev
from tests.support_mqtt import Linked, Subscriber, dedupe, start_broker, validate, validate_all, wait_for

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def outage_broker(tmp_path):
    b = start_broker(tmp_path / "broker", persistence=True)
    yield b
    b.stop()


def check_feed(received: list[dict], expected_seqs: list[int]) -> dict[str, int]:
    """Validate, dedupe by id, check seq order; return the figures."""
    for e in received:
        validate(e, "event")
    unique = dedupe(received)
    got = [e["seq"] for e in unique]
    assert got == sorted(got), "first copies arrive in seq order"
    missing = sorted(set(expected_seqs) - set(got))
    return {"sent": len(expected_seqs), "delivered": len(set(expected_seqs) & set(got)),
            "lost": len(missing), "duplicates": len(received) - len(unique)}


def test_broker_outage_during_50_presses_loses_nothing(outage_broker, tmp_path, clock, record_property):
    district = Subscriber(outage_broker, client_id="district-outage", clean=False)
    lc = Linked(outage_broker, tmp_path / "state", clock=clock, outbox_alarm_depth=40)
    try:
        lc.wait_delivered()
        outage_broker.stop()
        wait_for(lambda: not lc.link.health()["connected"], what="the link to notice the outage")
        first = lc.journal.last_seq + 1
        presses = []
        for _ in range(50):
            decision = lc.controller.press()
            assert decision.ok and decision.request_id
            presses.append(decision.request_id)
            clock.advance(61)                     # each press a new ring; the old one expires
            lc.controller.core.tick()
        wait_for(lambda: len(lc.events_of(ev.SNAPSHOT_CAPTURED)) + len(lc.events_of(ev.CAMERA_FAILED)) >= 50,
                 what="50 snapshots journaled")
        assert lc.journal.outbox_depth() >= 150, "everything waits in the journal"
        wait_for(lambda: lc.link.health()["backlog_alarm"], what="the outbox_backlog alarm")
        assert "outbox_backlog" in lc.controller.core.status()["alarms"]

        outage_broker.start()
        lc.wait_delivered(timeout=60)
        wait_for(lambda: not lc.link.health()["backlog_alarm"], what="the backlog alarm to clear")
        last = lc.journal.last_seq
        wait_for(lambda: {e["seq"] for e in district.events(lc.root)} >= set(range(first, last + 1)),
                 timeout=60, what="the district subscriber to get every event")
        received = [e for e in district.events(lc.root) if e["seq"] >= first]
        figures = check_feed(received, list(range(first, last + 1)))
        pressed = [e["request_id"] for e in dedupe(received) if e["type"] == ev.BUZZER_PRESSED]
        assert pressed == presses, "all 50 presses, in order"
        figures["presses_sent"], figures["presses_delivered"] = len(presses), len(pressed)
        print(f"\nMQTT broker outage figures: {figures}")
        record_property("outage_figures", figures)
        assert figures["lost"] == 0 and figures["delivered"] == figures["sent"]
        types = [e["type"] for e in dedupe(received)]
        assert ev.ALARM_RAISED in types and ev.ALARM_CLEARED in types
        state = wait_for(lambda: [m.json() for m in district.on(f"{lc.root}/state")
                                  if m.json()["last_seq"] >= last and m.json()["outbox_depth"] == 0])
        validate(state[-1], "state")
    finally:
        lc.close()
        district.close()
    assert validate_all(district) > 0


def _count_of(state_dir: Path, event_type: str) -> int:
    """How many events of one type the daemon's journal holds (second, read-only connection)."""
    con = sqlite3.connect(f"file:{state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM events WHERE type = ?", (event_type,)).fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _journal_counts(state_dir: Path) -> tuple[int, int]:
    """(events, undelivered) read from the daemon's journal by a second SQLite connection."""
    db = state_dir / "journal.sqlite3"
    if not db.exists():
        return (0, 0)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT COUNT(*), COALESCE(SUM(delivered = 0), 0) FROM events").fetchone()
        return int(row[0]), int(row[1])
    except sqlite3.Error:
        return (0, 0)
    finally:
        con.close()


class Daemon:
    """``python -m entry_buzzer simulate`` as a real subprocess, driven through its console."""

    def __init__(self, broker, tmp: Path, door: str):
        self.state_dir = tmp / "state"
        self.config = tmp / "entry.toml"
        self.config.write_text(f"""
[site]
campus = "test-campus"
door = "{door}"

[mqtt]
enabled = true
username = "ctl"
password_file = "{broker.password_file('ctl')}"
client_id = "ctl-{door}"
keepalive_seconds = 10
reconnect_min_seconds = 0.1
reconnect_max_seconds = 1.0

[web]
enabled = false
""")
        self.args = [sys.executable, "-m", "entry_buzzer", "simulate", "--no-web", "--console",
                     "--config", str(self.config), "--state-dir", str(self.state_dir),
                     "--mqtt-port", str(broker.port)]
        self.log = tmp / "daemon.log"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        logfile = open(self.log, "a")
        try:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.PIPE, stdout=logfile,
                                         stderr=subprocess.STDOUT, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            logfile.close()
        wait_for(lambda: "simulated campus ready" in self.log.read_text() or self.proc.poll() is not None,
                 what="the daemon to start")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]

    def send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdin.close()
        self.proc = None

    def terminate(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            finally:
                self.proc.stdin.close()
                self.proc = None


@pytest.mark.process
def test_sigkill_with_undelivered_events_then_restart_delivers_them(outage_broker, tmp_path, record_property):
    door = "sigkill-door"
    root = f"entry/test-campus/{door}"
    daemon = Daemon(outage_broker, tmp_path, door)
    district = Subscriber(outage_broker, client_id="district-sigkill", clean=False,
                          topics=(f"{root}/events", f"{root}/status", f"{root}/state"))
    try:
        daemon.start()
        wait_for(lambda: _journal_counts(daemon.state_dir)[0] >= 1 and _journal_counts(daemon.state_dir)[1] == 0,
                 what="controller_started delivered")
        # Unclean disconnect first: SIGKILL while connected -> the broker publishes the last will.
        daemon.kill()
        wait_for(lambda: district.on(f"{root}/status") and district.on(f"{root}/status")[-1].payload == b"offline",
                 what="the retained offline (last will)")
        late = Subscriber(outage_broker, topics=(f"{root}/status",))
        assert wait_for(lambda: late.on(f"{root}/status"))[-1].payload == b"offline"
        assert late.on(f"{root}/status")[-1].retain
        late.close()

        # Now: broker down, presses journaled but undelivered, then SIGKILL.
        outage_broker.stop()
        daemon.start()
        before, _ = _journal_counts(daemon.state_dir)
        for _ in range(5):
            daemon.send("press")
            daemon.send("lockdown start")
            daemon.send("lockdown end")
        wait_for(lambda: _journal_counts(daemon.state_dir)[0] >= before + 11, what="events journaled")
        # every command handled: killing between a lockdown start and its end would (rightly)
        # leave the lockdown in force after the restart
        wait_for(lambda: _count_of(daemon.state_dir, ev.LOCKDOWN_ENDED) >= 5, what="the fifth lockdown end")
        _, undelivered_before = _journal_counts(daemon.state_dir)
        daemon.kill()
        total, undelivered = _journal_counts(daemon.state_dir)   # stable now: the writer is dead
        assert undelivered >= max(11, undelivered_before), "the outbox survived SIGKILL"

        outage_broker.start()
        online_before = len([m for m in district.on(f"{root}/status") if m.payload == b"online"])
        daemon.start()
        wait_for(lambda: _journal_counts(daemon.state_dir)[1] == 0, timeout=60, what="the outbox to drain")
        final_total, _ = _journal_counts(daemon.state_dir)
        wait_for(lambda: {e["seq"] for e in district.events(root)} >= set(range(1, final_total + 1)),
                 timeout=60, what="every event at the district subscriber")
        figures = check_feed(district.events(root), list(range(1, final_total + 1)))
        print(f"\nMQTT SIGKILL figures: {figures} (undelivered at kill: {undelivered})")
        record_property("sigkill_figures", figures)
        assert figures["lost"] == 0
        unique = dedupe(district.events(root))
        starts = [e for e in unique if e["type"] == ev.CONTROLLER_STARTED]
        assert [s["previous_stop"] for s in starts] == ["none", "unclean", "unclean"]

        # Reconnect after the unclean stop: online again and a fresh state.
        wait_for(lambda: len([m for m in district.on(f"{root}/status") if m.payload == b"online"]) > online_before,
                 what="online after restart")
        state = wait_for(lambda: [m.json() for m in district.on(f"{root}/state")
                                  if m.json()["last_seq"] >= starts[-1]["seq"]], what="fresh state")[-1]
        validate(state, "state")
        assert state["door"] == "locked" and state["lockdown"] is None
    finally:
        daemon.terminate()
        district.close()
    assert validate_all(district) > 0


@pytest.mark.parametrize("recovery", ["reconnect", "restart"])
def test_broker_stopped_mid_burst_resends_unacknowledged(outage_broker, tmp_path, clock, record_property,
                                                         recovery):
    """Events in flight when the broker dies are sent again (at least once), whether the same link
    reconnects or the controller restarts meanwhile (then only the journal knows what was acknowledged)."""
    district = Subscriber(outage_broker, client_id=f"district-burst-{recovery}", clean=False)
    lc = Linked(outage_broker, tmp_path / "state", clock=clock, publish_snapshots=False)
    links = [lc]
    try:
        lc.wait_delivered()
        first = lc.journal.last_seq + 1
        for i in range(200):                               # a burst, then the broker vanishes mid-flight
            lc.journal.append(ev.ACTION_REFUSED, actor="Load Test", action="approve", code="unknown",
                              reason=f"burst {i}")
            if i == 100:
                outage_broker.stop()                        # mid-flight: PUBACKs still due are lost
        wait_for(lambda: not lc.link.health()["connected"], what="the link to notice")
        assert lc.journal.outbox_depth() > 0
        if recovery == "restart":
            lc.close()
            lc = Linked(outage_broker, tmp_path / "state", clock=clock, door=lc.door, publish_snapshots=False)
            links.append(lc)
        outage_broker.start()
        lc.wait_delivered(timeout=60)
        last = lc.journal.last_seq
        wait_for(lambda: {e["seq"] for e in district.events(lc.root)} >= set(range(first, last + 1)),
                 timeout=60, what="every event at the subscriber")
        check_feed([e for e in district.events(lc.root) if e["seq"] >= first], list(range(first, last + 1)))
        got = {e["seq"] for e in district.events(lc.root)} & set(range(first, last + 1))
        published = sum(link.link.health()["published_count"] for link in links)
        figures = {"sent": 200, "published_incl_resends": published, "lost": len(set(range(first, first + 200)) - got),
                   "undelivered_left": lc.journal.outbox_depth(),
                   "duplicates_at_subscriber": len(district.events(lc.root)) - len(
                       {e["id"] for e in district.events(lc.root)})}
        print(f"\nMQTT broker stopped mid-burst ({recovery}) figures: {figures}")
        record_property("burst_figures", figures)
        assert figures["lost"] == 0 and figures["undelivered_left"] == 0
    finally:
        for link in links:
            link.close()
        district.close()
    assert validate_all(district) > 0
