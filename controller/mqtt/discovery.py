"""Home Assistant MQTT discovery: retained configs describing the door's existing topics.

Why it exists: a school's facilities team often already runs Home Assistant. With
``mqtt.home_assistant = true`` the door shows up there as one device with read-only entities,
without anyone writing YAML. Why it is shaped like this:

- Read-only by construction. Only ``binary_sensor``, ``sensor`` and ``image`` entities are
  published, and no config carries a command topic: Home Assistant gets nothing it could
  unlock a door with (no lock, switch or button). Lockdown stays a district/panel action.
- Nothing new on the wire. Every entity reads a topic the daemon already publishes
  (``status``, ``state``, ``events``, ``snapshot/+``) with plain Jinja templates over the
  documented payloads, so the contract in docs/mqtt.md stays the one source of truth.
- Availability is the door's retained ``status`` (last will ``offline``); the ``online``
  entity itself reads that topic, so it shows *off* rather than *unavailable* when the door
  is gone.
- Published retained at QoS 1 on every connect (idempotent): Home Assistant picks them up
  whenever it (re)starts, and a changed door name or version reaches it after a restart.

Field names are Home Assistant's full names (not the abbreviations), checked by the JSON
Schema in controller/schemas/ha-discovery.json.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .. import __version__
from .connection import QOS

log = logging.getLogger("controller.mqtt")

MANUFACTURER = "entry-buzzer"
MODEL = "Entrance door controller"
COMPONENTS = ("binary_sensor", "sensor", "image")     # read-only platforms only


def _on_off(condition: str) -> str:
    """A value template giving ON/OFF (the binary sensor defaults) from the state payload."""
    return "{{ 'ON' if " + condition + " else 'OFF' }}"


def entities(root: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, object id, entity fields) for one door whose topic root is ``root``."""
    state, status = f"{root}/state", f"{root}/status"
    binary = {"payload_on": "ON", "payload_off": "OFF", "state_topic": state}
    return [
        ("binary_sensor", "door_open", {**binary, "name": "Door open", "device_class": "door",
                                        "value_template": _on_off("value_json.door == 'open'")}),
        ("binary_sensor", "ringing", {**binary, "name": "Ringing", "icon": "mdi:doorbell",
                                      "value_template": _on_off("value_json.ringing")}),
        ("binary_sensor", "lockdown", {**binary, "name": "Lockdown", "device_class": "safety",
                                       "value_template": _on_off("value_json.lockdown")}),
        ("binary_sensor", "panic", {**binary, "name": "Panic", "device_class": "safety",
                                    "value_template": _on_off("'panic' in value_json.alarms")}),
        ("binary_sensor", "online", {"name": "Online", "device_class": "connectivity", "state_topic": status,
                                     "payload_on": "online", "payload_off": "offline",
                                     "entity_category": "diagnostic"}),
        ("sensor", "last_event", {"name": "Last event", "icon": "mdi:history", "state_topic": f"{root}/events",
                                  "value_template": "{{ value_json.type }}",
                                  "json_attributes_topic": f"{root}/events"}),
        # image_topic is a subscription (wildcards allowed): one JPEG per ring, newest shown
        ("image", "snapshot", {"name": "Snapshot", "image_topic": f"{root}/snapshot/+",
                               "content_type": "image/jpeg"}),
    ]


def configs(prefix: str, campus: str, door: str, campus_name: str, door_name: str,
            root: str) -> dict[str, dict[str, Any]]:
    """Discovery topic -> config payload: ``{prefix}/{component}/entry-{campus}-{door}/{object}/config``."""
    node = f"entry-{campus}-{door}"
    status = f"{root}/status"
    device = {"identifiers": [node], "name": f"{campus_name} {door_name}", "manufacturer": MANUFACTURER,
              "model": MODEL, "sw_version": __version__}
    origin = {"name": "entry-buzzer", "sw_version": __version__}
    out: dict[str, dict[str, Any]] = {}
    for component, object_id, fields in entities(root):
        assert component in COMPONENTS
        config = {**fields, "unique_id": f"{node}-{object_id}", "device": device, "origin": origin, "qos": QOS}
        if fields.get("state_topic") != status:          # everything but "online" follows the door
            config.update(availability_topic=status, payload_available="online", payload_not_available="offline")
        out[f"{prefix}/{component}/{node}/{object_id}/config"] = config
    return out


class Discovery:
    """Publishes the retained discovery configs on every connect when enabled; else nothing."""

    def __init__(self, messages: dict[str, str]):
        self.messages = messages

    @classmethod
    def for_link(cls, controller: Any, root: str) -> "Discovery":
        s = controller.settings
        if not s.mqtt.home_assistant:
            return cls({})
        site = s.site
        found = configs(s.mqtt.home_assistant_prefix, site.campus, site.door, site.campus_name, site.door_name, root)
        return cls({topic: json.dumps(c, separators=(",", ":"), sort_keys=True) for topic, c in found.items()})

    def publish(self, client: Any) -> None:
        """From on_connect (paho's network thread): queue the retained configs, QoS 1."""
        for topic, payload in self.messages.items():
            client.publish(topic, payload, qos=QOS, retain=True)
        if self.messages:
            log.info("mqtt: published %d Home Assistant discovery configs", len(self.messages))
