"""The dashboard's health shows the real MQTT link: connected, then disconnected with events waiting."""

from __future__ import annotations

from tests.support_mqtt import Linked, start_broker, wait_for
from tests.support_web import TEST_CONFIG, Signed, add_users


def test_health_shows_mqtt_link_and_outbox(tmp_path):
    from web import close_app, create_app
    b = start_broker(tmp_path / "broker")
    lc = Linked(b, tmp_path / "state").ready()
    app = create_app(lc.controller, test_config=TEST_CONFIG)
    try:
        add_users(app.extensions["panel_store"])
        user = Signed(app.test_client(), "sam")
        health = user.get("/api/status").json["health"]
        assert health["mqtt"] == {"enabled": True, "connected": True}
        b.stop()
        wait_for(lambda: not lc.link.health()["connected"], what="the link to notice the broker is gone")
        lc.controller.press()
        health = wait_for(lambda: (h := user.get("/api/status").json["health"])["outbox_depth"] > 0 and h)
        assert health["mqtt"]["connected"] is False
    finally:
        close_app(app)
        lc.close()
        b.stop()
