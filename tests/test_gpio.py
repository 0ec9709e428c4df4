"""GPIO adapter and daemon wiring on gpiozero's MockFactory (passed explicitly)."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockFactory

from controller import config as cfg
from controller import daemon
from controller import events as ev
from controller.gpio import DoorHardware, StrikeRelay, relock
from controller.simulate import SimulatedStation
from tests.conftest import wait_for


def run_door(settings, pin_factory, clock=None):
    """A built, started controller with its core loop, on the mock pins (and the given clock)."""
    s = cfg.with_overrides(settings, door={"unlock_seconds": 0.5})
    controller = daemon.build(s, pin_factory=pin_factory, simulated=True, clock=clock)
    station = SimulatedStation(pin_factory, s.gpio)
    station.settle()
    daemon.start(controller)
    loop = daemon.CoreLoop(controller.core)
    loop.start()
    yield controller, station
    loop.stop()
    loop.join(5)
    daemon.stop(controller, "test teardown")


@pytest.fixture
def running(settings, pin_factory):
    yield from run_door(settings, pin_factory)


@pytest.fixture
def running_on_fake_clock(settings, pin_factory, clock):
    """The same on the fake clock: the core loop runs on the core's clock, so time moves only when told."""
    yield from run_door(settings, pin_factory, clock)


def test_strike_pin_never_high_at_start(pin_factory):
    hw = DoorHardware(cfg.GpioSettings(), pin_factory=pin_factory)
    try:
        assert [s.state for s in pin_factory.pin(17).states] == [False]
        assert not hw.strike.is_unlocked
    finally:
        hw.close()


def test_hardware_close_is_safe_twice_and_leaves_strike_low(pin_factory):
    hw = DoorHardware(cfg.GpioSettings(), pin_factory=pin_factory)
    hw.strike.unlock()
    hw.close()
    hw.close()
    assert not pin_factory.pin(17).state


def test_relock_command_drives_strike_low(pin_factory):
    relock(cfg.GpioSettings(), pin_factory=pin_factory)
    pin = pin_factory.pin(17)
    assert [st.state for st in pin.states] == [False]


def test_software_backstop_forces_lock_if_core_hangs(pin_factory):
    relay = StrikeRelay(17, pin_factory=pin_factory, backstop_seconds=0.2)
    relay.unlock()
    assert relay.is_unlocked
    assert wait_for(lambda: not relay.is_unlocked, timeout=5)
    relay.close()


def test_press_on_mock_pin_produces_journaled_ring(running):
    controller, station = running
    station.press()
    assert wait_for(lambda: controller.journal.query(types=[ev.BUZZER_PRESSED]))
    pressed = controller.journal.query(types=[ev.BUZZER_PRESSED])[0]
    assert controller.status()["ring"]["request_id"] == pressed.request_id


def test_five_quick_presses_make_one_request(running_on_fake_clock, clock):
    controller, station = running_on_fake_clock
    for _ in range(5):
        station.press()
        clock.advance(0.06)   # > debounce (50 ms): distinct presses, not bounce
    assert wait_for(lambda: controller.status()["ring"] and controller.status()["ring"]["presses"] == 5)
    assert len(controller.journal.query(types=[ev.BUZZER_PRESSED])) == 1


def test_contact_bounce_is_debounced(running):
    controller, station = running
    pin = station.factory.pin(station.gpio.buzzer_pin)
    for _ in range(6):            # a bouncing contact: many edges within microseconds
        pin.drive_low()
        pin.drive_high()
    assert wait_for(lambda: controller.status()["ring"] is not None)
    assert controller.status()["ring"]["presses"] == 1


def test_approval_gives_one_pulse_of_configured_length(running):
    controller, station = running
    strike_pin = station.factory.pin(station.gpio.strike_pin)
    station.press()
    assert wait_for(lambda: controller.status()["ring"] is not None)
    rid = controller.status()["ring"]["request_id"]
    assert controller.approve(rid, "Ms. Rivera").ok
    assert station.strike_on
    assert wait_for(lambda: not station.strike_on, timeout=10)
    states = list(strike_pin.states)
    on_states = [i for i, s in enumerate(states) if s.state]
    assert len(on_states) == 1, states
    # MockPin records the time since the previous change: the 'off' entry holds the pulse length
    pulse = states[on_states[0] + 1].timestamp
    assert 0.49 <= pulse < 5.0   # never short (timer granularity aside), bounded
    assert controller.journal.last_event().type == ev.DOOR_LOCKED


def test_leds_follow_the_ring(running):
    controller, station = running
    station.press()
    assert wait_for(lambda: controller.hardware.leds.state == "ringing")
    rid = controller.status()["ring"]["request_id"]
    controller.deny(rid, "Mr. Chen")
    assert controller.hardware.leds.state == "denied" and station.leds()["denied"]


def test_door_contact_and_tamper_edges_reach_the_core(running):
    controller, station = running
    station.set_door(True)
    assert wait_for(lambda: "forced_open" in controller.status()["alarms"])
    station.set_door(False)
    station.set_tamper(True)
    assert wait_for(lambda: "tamper" in controller.status()["alarms"])
    kinds = [e.type for e in controller.journal.query(limit=50)]
    assert ev.DOOR_OPENED in kinds and ev.DOOR_CLOSED in kinds


def test_start_journals_previous_stop(settings):
    for expected in ("none", "clean"):
        factory = MockFactory()
        c = daemon.build(settings, pin_factory=factory)
        daemon.start(c)
        assert c.journal.query(types=[ev.CONTROLLER_STARTED])[0].data["previous_stop"] == expected
        daemon.stop(c, "test")
        factory.reset()


def test_request_to_exit_sensor_makes_opening_egress(running):
    controller, station = running
    station.request_exit()
    station.set_door(True)
    assert wait_for(lambda: controller.journal.query(types=[ev.DOOR_OPENED]))
    assert controller.journal.query(types=[ev.DOOR_OPENED])[0].data["egress"] is True
    assert "forced_open" not in controller.status()["alarms"]


def test_simulated_campus_pins_keep_bounded_history():
    from controller.simulate import SimulatedPin

    factory = MockFactory(pin_class=SimulatedPin)
    relay = StrikeRelay(17, pin_factory=factory)
    for _ in range(SimulatedPin.HISTORY * 3):
        relay.unlock()
        relay.lock()
    assert len(factory.pin(17).states) == SimulatedPin.HISTORY
    assert factory.pin(17).states[-1].state is False
    relay.close()
    factory.reset()


def test_lockdown_survives_a_restart(settings):
    factory = MockFactory()
    c = daemon.build(settings, pin_factory=factory)
    daemon.start(c)
    c.start_lockdown("District", "threat", "mqtt")
    daemon.stop(c, "crash")          # any stop, clean or not: the journal holds the open lockdown
    factory.reset()

    factory = MockFactory()
    c = daemon.build(settings, pin_factory=factory)
    daemon.start(c)
    try:
        assert c.core.in_lockdown
        assert c.journal.query(types=[ev.CONTROLLER_STARTED])[0].data["lockdown_restored"] is True
        assert c.unlock_now("Ms. Rivera").code == "lockdown"
        assert c.end_lockdown("Principal", "all clear").ok
    finally:
        daemon.stop(c, "test")
        factory.reset()

    factory = MockFactory()
    c = daemon.build(settings, pin_factory=factory)
    daemon.start(c)
    try:
        assert not c.core.in_lockdown
        assert c.journal.query(types=[ev.CONTROLLER_STARTED])[0].data["lockdown_restored"] is False
    finally:
        daemon.stop(c, "test")
        factory.reset()


def test_an_edge_reaches_the_door_before_gpiozeros_bookkeeping(pin_factory):
    """The press path (issue 11): the door's callback runs before gpiozero's two threading.Event
    updates; the device's state and waiters are right once it returns, and a second edge that
    comes in during the callback wins."""
    from controller.gpio import EdgeInput

    device = EdgeInput(17, pull_up=True, pin_factory=pin_factory)
    pin = pin_factory.pin(17)
    seen: list[tuple[str, bool]] = []

    def activated() -> None:
        seen.append(("active", device._active_event.is_set()))      # noqa: SLF001
    device.when_activated = activated
    device.when_deactivated = lambda: seen.append(("inactive", device._inactive_event.is_set()))  # noqa: SLF001
    pin.drive_low()
    assert seen == [("active", False)]              # called before the event was set
    assert device.is_active and device.wait_for_active(0) and device.active_time is not None
    pin.drive_high()
    assert seen[-1] == ("inactive", False) and not device.is_active and device.wait_for_inactive(0)

    def release_during() -> None:                   # an edge within the callback
        seen.append(("active", True))
        pin.drive_high()
    device.when_activated = release_during
    pin.drive_low()
    assert [kind for kind, _ in seen[-2:]] == ["active", "inactive"]        # both fired, in order
    assert not device.is_active and device.wait_for_inactive(0) and not device.wait_for_active(0)
    device.close()


def test_the_door_inputs_are_edge_inputs(pin_factory, settings):
    from controller.gpio import EdgeInput

    hw = DoorHardware(settings.gpio, pin_factory=pin_factory)
    try:
        inputs = [hw.buzzer, hw.door_contact, hw.tamper, hw.exit_request, hw.panic]
        assert all(isinstance(d, EdgeInput) for d in inputs if d is not None)
        assert hw.buzzer is not None and hw.door_contact is not None
    finally:
        hw.close()
