"""Account rules (issue 10, finding 7): weak passwords refused (stricter for admins), display names
unique after NFKC + casefold with look-alikes refused, and the username recorded in every audit event."""

from __future__ import annotations

import pytest

from controller import events as ev
from tests.support_web import NAMES, ring
from web.store import PanelStore, StoreError

WEAK = ["aaaaaaaaaa", "password12", "0000000000", "aaaaaaaaaaaa", "password1234", "000000000000",
        "qwerty123456", "abcdefghijkl", "1234567890ab", "abc123abc123"]


@pytest.fixture
def store(tmp_path):
    s = PanelStore(tmp_path / "panel.sqlite3", scrypt_n=2 ** 10)
    yield s
    s.close()


@pytest.mark.parametrize("password", WEAK)
@pytest.mark.parametrize("role", ["staff", "admin"])
def test_common_and_trivial_passwords_are_refused(store, password, role):
    with pytest.raises(StoreError, match="password"):
        store.add_user("kim", password, role, "Kim Office")
    assert store.users() == []


def test_admins_need_a_longer_and_stronger_password(store):
    store.add_user("kim", "vellum-okra", "staff", "Kim Office")          # 11 characters, strength >= 2
    with pytest.raises(StoreError, match="12 to 256"):
        store.add_user("lee", "vellum-okra", "admin", "Lee Office")
    with pytest.raises(StoreError, match="strength 2 of 4, admin accounts need 3"):
        store.add_user("lee", "michael19850", "admin", "Lee Office")
    store.add_user("lee", "lantern-okra-7", "admin", "Lee Office")
    with pytest.raises(StoreError):                                      # the same rules on a change
        store.set_password("lee", "password1234")
    assert store.authenticate("lee", "lantern-okra-7") is not None


def test_a_password_made_of_the_account_names_is_refused(store):
    for password in ("kim-the-office-1", "xx-KIMBERLY-2024", "officeofficeZ9"):
        with pytest.raises(StoreError, match="username or display name"):
            store.add_user("kimberly", password, "staff", "Kim Office")


def test_admin_page_refuses_a_weak_password_and_changes_nothing(admin, app, controller):
    for password in ("aaaaaaaaaa", "password12", "0000000000"):
        resp = admin.post("/admin/users", {"username": "kim", "display_name": "Kim", "role": "admin",
                                           "password": password})
        assert resp.status_code == 400 and "password" in resp.get_data(as_text=True)
        assert admin.post("/admin/users/sam/password", {"password": password}).status_code == 400
    assert app.extensions["panel_store"].get_user("kim") is None
    assert controller.journal.query(types=[ev.ACCOUNT_CHANGED]) == []


@pytest.mark.parametrize("taken,again", [
    ("Sam Staff", "sam staff"),
    ("Sam Staff", "SAM  STAFF "),
    ("Sam Staff", "Ｓａｍ Ｓｔａｆｆ"),            # fullwidth: the same after NFKC
    ("Straße", "STRASSE"),                         # casefold
    ("Oxo", "Охо"),                                # all-Cyrillic look-alike of a Latin name
    ("Ada", "kim"),                                # nor another account's username
])
def test_display_names_are_unique_after_normalisation(store, taken, again):
    store.add_user("first", "lantern-okra-7", "staff", taken)
    if again == "kim":
        store.add_user("kim", "harbor-violet-tundra-3", "staff", "Kim")
        with pytest.raises(StoreError, match="looks like"):
            store.add_user("other", "harbor-violet-tundra-3", "staff", "KIM")
        return
    with pytest.raises(StoreError, match="looks like"):
        store.add_user("second", "harbor-violet-tundra-3", "staff", again)


@pytest.mark.parametrize("name", ["Ѕam Staff", "Sam Stаff", "Αda Admin", "Ada\u200bAdmin", "Sam\u202eStaff"])
def test_mixed_script_and_invisible_display_names_are_refused(store, name):
    with pytest.raises(StoreError, match="display name"):
        store.add_user("kim", "harbor-violet-tundra-3", "staff", name)


@pytest.mark.parametrize("name", ["Ольга Иванова", "山田 花子", "やまだ 花子", "Zoë O'Brien-Núñez", "김 민준"])
def test_single_script_names_in_any_language_are_accepted(store, name):
    assert store.add_user("kim", "harbor-violet-tundra-3", "staff", name).display_name == name


def test_every_staff_action_is_audited_with_the_username(staff, admin, controller):
    rid = ring(controller)
    assert staff.post("/api/approve", {"request_id": rid}).status_code == 200
    assert staff.post("/api/approve", {"request_id": rid}).status_code == 409          # refused: audited too
    assert staff.post("/api/lockdown/start", {"reason": "drill"}).status_code == 200
    assert admin.post("/api/lockdown/end", {"confirm": "yes", "reason": "drill over"}).status_code == 200
    assert admin.post("/admin/users", {"username": "kim", "display_name": "Kim", "role": "staff",
                                       "password": "harbor-violet-tundra-3"}).status_code == 200
    by_actor = [e for e in controller.journal.query(limit=100) if e.actor]
    assert {e.type for e in by_actor} >= {ev.ENTRY_APPROVED, ev.DOOR_UNLOCKED, ev.ACTION_REFUSED,
                                          ev.LOCKDOWN_STARTED, ev.LOCKDOWN_ENDED, ev.ACCOUNT_CHANGED}
    usernames = {v: k for k, v in NAMES.items()}
    for e in by_actor:
        assert e.data.get("actor_username") == usernames[e.actor], e
        assert e.to_dict()["actor_username"] == usernames[e.actor]
    for e in controller.journal.query(types=[ev.LOGIN_SUCCEEDED]):
        assert e.data["username"] in NAMES
    from tests.support_mqtt import validate
    for e in controller.journal.query(limit=100):       # the published event schema still holds
        validate(e.to_dict(), "event")


def test_actions_outside_a_signed_in_request_are_not_attributed(controller):
    controller.core.start_lockdown("District console", "drill", "mqtt")
    e = controller.journal.query(types=[ev.LOCKDOWN_STARTED])[0]
    assert "actor_username" not in e.data
