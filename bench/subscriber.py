"""An independent subscriber process: prints '<perf_counter> <type> <id>' for each message.

Runs in its own process so the timestamp is taken outside the daemon's (and the benchmark's)
interpreter; time.perf_counter() is CLOCK_MONOTONIC on Linux, comparable across processes.

    python -m bench.subscriber PORT USER PASSWORD TOPIC
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as mqtt


def main() -> None:
    port, user, password, topic = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    out = sys.stdout

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        try:
            event = json.loads(msg.payload)
            kind, ident = event.get("type", "-"), event.get("id", "-")
        except ValueError:
            kind, ident = "raw", "-"
        out.write(f"{now:.9f} {kind} {ident}\n")
        out.flush()

    def on_subscribe(*_a: object) -> None:
        out.write("subscribed\n")
        out.flush()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv311)
    client.username_pw_set(user, password)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port, keepalive=30)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
