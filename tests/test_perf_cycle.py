"""The ring/approve cycle's structural cuts (issue 11's CPU figure), as behaviour:

- a ring/approve cycle starts no thread: the snapshot, its capture, the ringing LED's blinking
  and the strike backstop run on long-lived threads (the backstop on one of its own);
- a publish from another thread reaches the broker without paho's network thread: it is
  written by the publishing thread, so it goes out even while that thread is busy;
- the LED still blinks and stops, and the backstop still relocks (tests/test_gpio.py);
- a live event, once written to the broker's socket, gives the CPU away once (a broker on the
  same machine forwards it at once); an outbox drain does not, event by event.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from controller import events as ev
from controller import gpio
from controller.mqtt import connection as conn
from controller.scheduler import Scheduler, Worker
from controller.simulate import SIM_GPIO
from tests.support_mqtt import Broker, Linked, Subscriber, wait_for

pytestmark = pytest.mark.broker


def _cycle(lc: Linked, clock: Any) -> None:
    """Press, photo, approve, the visitor walks in, the door relocks, all delivered. The
    inputs go to the core directly (the GPIO edge dispatch starts no thread either way)."""
    core = lc.controller.core
    before = lc.journal.last_seq
    clock.advance(1.0)                             # past the press debounce of the last ring
    decision = core.press()
    assert decision.ok and decision.request_id, decision
    rid = decision.request_id
    wait_for(lambda: any(e.type == ev.SNAPSHOT_CAPTURED for e in lc.journal.for_request(rid)), what="the photo")
    assert core.approve(rid, "Test Staff").ok
    core.door_changed(True)
    core.door_changed(False)
    assert [e.type for e in lc.journal.query(limit=3)] == [ev.DOOR_LOCKED, ev.DOOR_CLOSED, ev.DOOR_OPENED]
    assert lc.journal.last_seq > before
    lc.wait_delivered()


def test_a_ring_approve_cycle_starts_no_thread(linked, clock, monkeypatch):
    """Was four per ring: snapshot-<id>, camera-capture, gpiozero's blink thread, a Timer."""
    lc = linked().ready()
    _cycle(lc, clock)                              # warm-up: the long-lived threads start here
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(3):
        _cycle(lc, clock)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    assert started == []
    names = {t.name for t in threading.enumerate()}
    assert {"snapshots", "camera-capture", "led-blink", "strike-backstop"} <= names


def test_the_door_inputs_poll_nothing_while_idle(pin_factory):
    """gpiozero's Button starts a hold thread per button that wakes every 0.1 s for ever (for
    ``when_held``, never used): the buzzer, exit and panic inputs are plain input devices, so
    an idle door's hardware runs no thread at all, and a press still reaches its callback."""
    from gpiozero.mixins import HoldThread

    before = {t for t in threading.enumerate() if isinstance(t, HoldThread)}
    hw = gpio.DoorHardware(gpio.GpioSettings(**SIM_GPIO), pin_factory=pin_factory)
    try:
        pressed: list[str] = []
        hw.connect(on_press=lambda: pressed.append("buzzer"), on_door=lambda _o: None, on_tamper=lambda _t: None,
                   on_exit_request=lambda: pressed.append("exit"), on_panic=lambda: pressed.append("panic"))
        assert {t for t in threading.enumerate() if isinstance(t, HoldThread)} == before
        for pin in ("buzzer_pin", "exit_request_pin", "panic_pin"):
            pin_factory.pin(SIM_GPIO[pin]).drive_low()
        assert pressed == ["buzzer", "exit", "panic"]
    finally:
        hw.close()


def test_a_publish_from_another_thread_goes_out_while_the_network_thread_is_busy(broker):
    """paho alone hands every publish to its network thread; ours writes it from the caller,
    so the event reaches a subscriber even while that thread is stuck in a callback."""
    root = "entry/perf/direct"
    sub = Subscriber(broker, user="district", topics=(f"{root}/events",))
    operator = Subscriber(broker, user="operator", topics=())
    client = conn.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"perf-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set("ctl", broker.accounts["ctl"])
    busy, release, subscribed = threading.Event(), threading.Event(), threading.Event()

    def on_connect(c: mqtt.Client, *_a: object) -> None:
        c.subscribe(f"{root}/cmd/lockdown", qos=0)

    def on_message(*_a: object) -> None:      # the network thread takes a command...
        busy.set()
        release.wait(30)                      # ...and is stuck in its callback until released

    client.on_connect = on_connect
    client.on_subscribe = lambda *_a: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", broker.port, keepalive=30)
    client.loop_start()
    try:
        assert subscribed.wait(20)
        operator.client.publish(f"{root}/cmd/lockdown", b"{}", qos=0)
        wait_for(busy.is_set, what="the network thread to be busy")
        wakes = client.loop_wakes
        for n in range(5):
            client.publish(f"{root}/events", f'{{"n":{n}}}'.encode(), qos=1)
        wait_for(lambda: len(sub.on(f"{root}/events")) >= 5, what="every publish at the subscriber", timeout=10)
        assert not release.is_set()                         # the network thread never moved
        assert client.loop_wakes == wakes and client.direct_writes >= 5
    finally:
        release.set()
        client.disconnect()
        client.loop_stop()
        operator.close()
        sub.close()


def _record_writes_and_yields(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """'write' for each packet the MQTT client writes, 'yield' for each CPU hand-over."""
    seen: list[str] = []
    real_write = conn.Client._packet_write

    def write(self: conn.Client) -> mqtt.MQTTErrorCode:
        seen.append("write")
        return real_write(self)

    monkeypatch.setattr(conn.Client, "_packet_write", write)
    monkeypatch.setattr(conn.os, "sched_yield", lambda: seen.append("yield"))
    return seen


def test_a_live_event_hands_the_cpu_to_the_broker_right_after_its_write(broker, linked, clock, monkeypatch):
    """Linux queues a broker woken by our write on our CPU, expecting us to block; the ring's
    thread goes on instead (photo, indicators, state), so it yields once, right after the
    event's write and before the retained state's."""
    lc = linked().ready()
    _cycle(lc, clock)
    sub = Subscriber(broker, user="district", topics=(f"{lc.root}/events",))
    try:
        seen = _record_writes_and_yields(monkeypatch)
        clock.advance(1.0)
        decision = lc.controller.core.press()
        assert decision.ok and decision.request_id
        wait_for(lambda: any(e.get("type") == ev.BUZZER_PRESSED for e in sub.events(lc.root)),
                 what="the ring at the subscriber")
        assert seen[:2] == ["write", "yield"], seen          # the event, then the hand-over
        assert "write" in seen[2:]                           # the retained state follows it
    finally:
        sub.close()


def test_an_outbox_drain_after_an_outage_does_not_yield_per_event(tmp_path, clock, monkeypatch):
    """The hand-over is for a ring's latency; a drain of 30 journaled events after the broker
    returns goes out in windows from the worker, with no yield per event."""
    broker = Broker(tmp_path / "broker")
    lc = Linked(broker, tmp_path / "state", clock=clock)     # the broker is not running yet
    try:
        for n in range(30):
            lc.journal.append(ev.DOOR_OPENED if n % 2 == 0 else ev.DOOR_CLOSED)
        seen = _record_writes_and_yields(monkeypatch)
        broker.start()
        lc.wait_delivered()
        assert seen.count("write") >= 2 and "yield" not in seen, seen
    finally:
        lc.close()
        broker.stop()


def test_the_ringing_led_blinks_on_one_long_lived_thread_and_stops(pin_factory, monkeypatch):
    monkeypatch.setattr(gpio, "RINGING_BLINK", (0.02, 0.02))
    leds = gpio.VisitorLeds(SIM_GPIO["led_ringing_pin"], SIM_GPIO["led_approved_pin"],
                            SIM_GPIO["led_denied_pin"], pin_factory=pin_factory)
    ringing = leds.led("ringing")
    assert ringing is not None
    try:
        for _ in range(2):                         # two rings: the same thread blinks both
            leds.show("ringing")
            seen = set()
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                seen.add(bool(ringing.value))
                time.sleep(0.005)
            assert seen == {True, False}, "the ringing LED did not blink"
            leds.show("approved")
            assert not ringing.value and leds.led("approved").value
            time.sleep(0.1)                        # five blink periods: it stays off
            assert not ringing.value
        assert leds._timers.threads_started == 1
    finally:
        leds.close()


def test_scheduler_runs_in_time_order_and_cancels():
    sched = Scheduler("test-timers")
    ran: list[str] = []
    done = threading.Event()
    sched.call_later(0.06, lambda: (ran.append("late"), done.set()))
    cancelled = sched.call_later(0.02, lambda: ran.append("cancelled"))
    sched.call_later(0.01, lambda: ran.append("early"))
    cancelled.cancel()
    assert done.wait(10)
    assert ran == ["early", "late"] and sched.threads_started == 1
    sched.close()
    assert sched.call_later(0, lambda: ran.append("after close")).cancelled


def test_worker_runs_jobs_in_order_on_one_thread():
    worker = Worker("test-worker")
    seen: list[tuple[int, str]] = []
    for n in range(5):
        assert worker.submit(lambda n=n: seen.append((n, threading.current_thread().name)))
    worker.close(wait=10)
    assert seen == [(n, "test-worker") for n in range(5)] and worker.threads_started == 1
    assert not worker.submit(lambda: None)


class _Strike:
    def __init__(self) -> None:
        self.on = False

    def unlock(self) -> None:
        self.on = True

    def lock(self) -> None:
        self.on = False


def _core_on(journal, clock):
    from controller.core import EntryCore
    from controller.door_settings import DoorSettings

    strike = _Strike()
    return EntryCore(journal, strike, DoorSettings(debounce_ms=0), clock=clock, has_door_contact=True), strike


def _transactions(journal) -> list[str]:
    """Count the journal's commits: one per autocommit INSERT or COMMIT."""
    seen: list[str] = []
    journal._db.set_trace_callback(                             # noqa: SLF001  (what this test is about)
        lambda sql: seen.append(sql.split()[0].upper()) if sql.split()[0].upper() in ("INSERT", "BEGIN", "COMMIT")
        else None)
    return seen


def _commits(statements: list[str]) -> int:
    inside, commits = False, 0
    for s in statements:
        if s == "BEGIN":
            inside = True
        elif s == "COMMIT":
            inside, commits = False, commits + 1
        elif s == "INSERT" and not inside:
            commits += 1
    return commits


def test_an_approval_and_its_unlock_and_a_close_and_its_relock_are_one_commit_each(tmp_path, clock):
    from controller.journal import Journal

    journal = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    core, strike = _core_on(journal, clock)
    try:
        rid = core.press().request_id
        statements = _transactions(journal)
        assert core.approve(rid, "Ms Office").ok and strike.on
        assert _commits(statements) == 1                 # was 2: entry_approved, then door_unlocked
        core.door_changed(True)
        statements.clear()
        core.door_changed(False)
        assert not strike.on
        assert _commits(statements) == 1                 # was 2: door_closed, then door_locked
        types = [e.type for e in reversed(journal.query(limit=10))]
        assert types == [ev.BUZZER_PRESSED, ev.ENTRY_APPROVED, ev.DOOR_UNLOCKED, ev.DOOR_OPENED,
                         ev.DOOR_CLOSED, ev.DOOR_LOCKED]
        seqs = [e.seq for e in reversed(journal.query(limit=10))]
        assert seqs == list(range(1, 7))
    finally:
        journal.close()


def test_an_approval_that_cannot_be_journaled_leaves_neither_event_and_the_door_locked(tmp_path, clock):
    from controller.journal import Journal

    journal = Journal(tmp_path / "j.sqlite3", "c", "d", now=clock.now)
    core, strike = _core_on(journal, clock)
    try:
        rid = core.press().request_id
        journal._db.execute("CREATE TRIGGER no_unlock BEFORE INSERT ON events WHEN NEW.type = 'door_unlocked' "
                            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
        decision = core.approve(rid, "Ms Office")
        assert not decision.ok and decision.code == "fault" and not strike.on
        assert [e.type for e in journal.query(limit=10)] == [ev.BUZZER_PRESSED]   # all or none
        assert journal.last_seq == 1
    finally:
        journal.close()


def test_a_successful_puback_builds_no_reason_or_properties_objects_and_a_refusal_still_counts(broker, monkeypatch):
    """paho built a ReasonCode and a Properties object for every PUBACK (a third of its network
    thread's time on a door); success acks now share one pair, other acks go through paho."""
    from paho.mqtt import properties as paho_properties

    sub = Subscriber(broker, user="district", topics=("entry/perf/acks/events",))
    client = conn.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"perf-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set("ctl", broker.accounts["ctl"])
    acks: list[tuple[int, bool]] = []
    built: list[str] = []
    real_init = paho_properties.Properties.__init__

    def counting_init(self: object, packet_type: int) -> None:
        built.append(threading.current_thread().name)
        real_init(self, packet_type)

    client.on_publish = lambda _c, _u, mid, reason, _p: acks.append((mid, reason.is_failure))
    client.connect("127.0.0.1", broker.port, keepalive=30)
    client.loop_start()
    try:
        wait_for(client.is_connected, what="the client to connect")
        monkeypatch.setattr(paho_properties.Properties, "__init__", counting_init)
        mids = [client.publish("entry/perf/acks/events", b"{}", qos=1).mid for _ in range(3)]     # subscribed
        mids += [client.publish("entry/perf/nobody/events", b"{}", qos=1).mid for _ in range(3)]  # nobody
        wait_for(lambda: len(acks) == 6, what="six acks")
        assert sorted(acks) == sorted((mid, False) for mid in mids)
        assert [n for n in built if n.startswith("paho")] == []
        refused = client.publish("entry/perf/acks/cmd/lockdown", b"{}", qos=1)   # not in ctl's ACL
        wait_for(lambda: len(acks) == 7, what="the refusal's ack")
        assert acks[-1] == (refused.mid, True)
    finally:
        client.disconnect()
        client.loop_stop()
        sub.close()
