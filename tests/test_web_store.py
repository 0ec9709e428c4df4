"""Accounts and sessions store, and the panel's command line (user, make-cert)."""

from __future__ import annotations

import sqlite3

import pytest

from entry_buzzer import cli
from web.store import SCRYPT_N, PanelStore, StoreError, verify_password


@pytest.fixture
def store(tmp_path):
    s = PanelStore(tmp_path / "panel.sqlite3", idle_minutes=30)
    yield s
    s.close()


def test_passwords_are_scrypt_hashed_at_production_cost(store, tmp_path):
    store.add_user("ann", "correct horse battery", "admin", "Ann")
    with sqlite3.connect(tmp_path / "panel.sqlite3") as db:
        stored = db.execute("SELECT pw_hash FROM users").fetchone()[0]
    db.close()
    assert stored.startswith(f"scrypt${SCRYPT_N}$") and "correct horse" not in stored
    assert verify_password("correct horse battery", stored) and not verify_password("wrong", stored)
    assert store.authenticate("ann", "correct horse battery").role == "admin"
    assert store.authenticate("ann", "correct horse batterY") is None
    assert store.authenticate("nobody", "correct horse battery") is None
    assert store.authenticate(None, None) is None


def test_session_tokens_are_stored_hashed_and_expire_when_idle(store, tmp_path):
    user = store.add_user("ann", "correct horse battery")
    token, session = store.create_session(user, "10.0.0.9", "tablet")
    with sqlite3.connect(tmp_path / "panel.sqlite3") as db:
        assert token not in str(db.execute("SELECT * FROM sessions").fetchall())
    db.close()
    now = [1_000_000.0]
    store.clock = lambda: now[0]
    token, session = store.create_session(user, "10.0.0.9", "tablet")
    now[0] += 29 * 60
    assert store.session(token).id == session.id        # activity resets the idle clock
    now[0] += 29 * 60
    assert store.session(token) is not None
    now[0] += 31 * 60
    assert store.session(token) is None
    assert store.session(token) is None                 # and it is gone for good


def test_last_admin_cannot_be_removed_or_demoted(store):
    store.add_user("ann", "correct horse battery", "admin")
    with pytest.raises(StoreError):
        store.remove_user("ann")
    with pytest.raises(StoreError):
        store.set_role("ann", "staff")
    store.add_user("bob", "correct horse battery", "admin")
    store.remove_user("ann")


def test_user_commands(tmp_path, capsys):
    state = tmp_path / "state"
    config = tmp_path / "door.toml"
    config.write_text(f'[storage]\nstate_dir = "{state}"\n[web]\nenabled = false\n')
    pw = tmp_path / "pw"
    pw.write_text("first-password-1\n")
    assert cli.main(["user", "add", "ann", "--config", str(config), "--role", "admin", "--name", "Ann Office",
                     "--password-file", str(pw)]) == 0
    assert cli.main(["user", "add", "ann", "--config", str(config), "--password-file", str(pw)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["user", "list", "--config", str(config)]) == 0
    assert "ann\tadmin\tAnn Office" in capsys.readouterr().out
    pw.write_text("second-password-2\n")
    assert cli.main(["user", "passwd", "ann", "--config", str(config), "--password-file", str(pw)]) == 0
    store = PanelStore(state / "panel.sqlite3")
    try:
        assert store.authenticate("ann", "second-password-2") is not None
    finally:
        store.close()
    pw.write_text("short\n")
    assert cli.main(["user", "add", "bob", "--config", str(config), "--password-file", str(pw)]) == 2
    assert cli.main(["user", "add", "bob", "--config", str(config),
                     "--password-file", str(tmp_path / "missing")]) == 2
    assert cli.main(["user", "remove", "ann", "--config", str(config)]) == 2      # last admin
    assert "last admin" in capsys.readouterr().err
    # no password on the command line: there is no option for it
    assert cli.main(["user", "add", "bob", "--config", str(config), "--password", "x" * 12]) == 2


def test_make_cert_command(tmp_path, capsys):
    assert cli.main(["make-cert", "--out", str(tmp_path / "tls"), "--host", "door.school.example",
                     "--host", "10.1.2.3"]) == 0
    out = capsys.readouterr().out
    assert "tls_cert_file" in out and (tmp_path / "tls" / "panel-key.pem").stat().st_mode & 0o077 == 0
    from cryptography import x509
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "panel-cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "door.school.example" in san.get_values_for_type(x509.DNSName)
    assert cli.main(["make-cert", "--out", str(tmp_path / "tls")]) == 1          # never overwrites


def test_simulated_campus_admin_gets_a_generated_password(settings):
    from web.cli import ensure_sim_admin
    first = ensure_sim_admin(settings)
    second = ensure_sim_admin(settings)
    assert first != second and len(first) >= 20
    store = PanelStore(settings.storage.state_dir / "panel.sqlite3")
    try:
        assert store.authenticate("admin", first) is None
        assert store.authenticate("admin", second).role == "admin"
    finally:
        store.close()


class Clocks:
    """An injected wall clock and monotonic clock, stepped by hand."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 5_000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def test_a_wall_clock_stepped_back_does_not_extend_a_session(tmp_path):
    """Finding 7 (session timing): a clock stepped back one day must not add a day of idle time."""
    c = Clocks()
    store = PanelStore(tmp_path / "p.sqlite3", idle_minutes=30, now=lambda: c.wall, clock=lambda: c.mono)
    try:
        user = store.add_user("ann", "correct horse battery")
        token, _ = store.create_session(user, "10.0.0.9", "tablet")
        c.advance(20 * 60)
        assert store.session(token, touch=False) is not None
        c.wall -= 86_400                               # NTP (or a person) steps the clock back a day
        c.advance(11 * 60)                             # 31 min idle in real time
        assert store.session(token) is None
        assert store.sessions() == []
    finally:
        store.close()


def test_a_wall_clock_stepped_forward_neither_crashes_nor_ends_a_session(tmp_path):
    c = Clocks()
    store = PanelStore(tmp_path / "p.sqlite3", idle_minutes=30, now=lambda: c.wall, clock=lambda: c.mono)
    try:
        user = store.add_user("ann", "correct horse battery")
        token, _ = store.create_session(user, "10.0.0.9", "tablet")
        c.wall += 86_400 * 365
        c.advance(60)
        assert store.session(token) is not None and len(store.sessions()) == 1
        c.wall -= 86_400 * 365 * 2                     # and back again, past the session's creation
        c.advance(60)
        assert store.session(token) is not None
        c.advance(31 * 60)
        assert store.session(token) is None
    finally:
        store.close()


def test_absolute_lifetime_ends_even_an_active_session(tmp_path):
    c = Clocks()
    store = PanelStore(tmp_path / "p.sqlite3", idle_minutes=30, max_hours=12, now=lambda: c.wall,
                       clock=lambda: c.mono)
    try:
        user = store.add_user("ann", "correct horse battery")
        token, session = store.create_session(user, "10.0.0.9", "tablet")
        assert session.expires_in == 12 * 3600
        for _ in range(11 * 4 + 3):                    # active every 15 minutes for 11 h 45 min
            c.advance(15 * 60)
            live = store.session(token)
            assert live is not None
        assert 0 < live.expires_in <= 15 * 60
        c.advance(15 * 60 + 1)
        assert store.session(token) is None
    finally:
        store.close()


def test_sessions_resumed_after_a_restart_fail_closed_on_a_clock_stepped_back(tmp_path):
    c = Clocks()
    store = PanelStore(tmp_path / "p.sqlite3", now=lambda: c.wall, clock=lambda: c.mono)
    user = store.add_user("ann", "correct horse battery")
    kept, _ = store.create_session(user, "10.0.0.9", "tablet")
    stale, _ = store.create_session(user, "10.0.0.9", "tablet")
    store.close()
    c.advance(60)
    c.mono = 10.0                                      # a new process: a new monotonic origin
    store = PanelStore(tmp_path / "p.sqlite3", now=lambda: c.wall, clock=lambda: c.mono)
    try:
        assert store.session(kept) is not None         # resumed: 1 min idle of 30
        c.wall -= 86_400                               # clock stepped back before the next one is seen
        assert store.session(stale) is None
        c.advance(29 * 60)
        assert store.session(kept) is not None         # the running process keeps monotonic time
    finally:
        store.close()
