"""The MQTT link to district monitoring: status, state, the event feed and lockdown commands.

One concern per module, so each can be read (and tested) on its own:

- ``connection``: the paho client, TLS, the durable session (fixed client id, clean_start
  off, session expiry), reconnect backoff with jitter, and the one callback guard;
- ``outbox``: the SQLite journal drained to the broker in seq order, marked delivered only on
  PUBACK, with its own window and depth (no journal reads in steady state);
- ``commands``: lockdown commands validated in paho's network thread, valid ones kept apart
  from junk, rejections journaled at a bounded rate;
- ``publisher``: retained ``status`` and ``state`` (one state publish per state change);
- ``link``: the daemon service wiring them together with one worker thread.

There is no unlock topic, and nothing in this package or the config can add one.
"""

from .commands import COMMAND_MAX_BYTES, CommandError, parse_command
from .connection import Backoff, tls_context, topic_root
from .link import MqttLink

__all__ = ["COMMAND_MAX_BYTES", "Backoff", "CommandError", "MqttLink", "parse_command", "tls_context",
           "topic_root"]
