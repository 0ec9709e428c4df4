"""The recorder's paho client (district/recorder/wire.py) on a socket pair: one ``recv`` serves
many packets, the short path and paho's own handler keep the packets' order, a packet split
across reads is put back together, and a batch's PUBACKs are the very bytes paho's ``ack()``
sends, in one write."""

from __future__ import annotations

import socket
import struct
from typing import Any, Iterator

import paho.mqtt.client as mqtt
import pytest

from district.recorder.wire import BufferedClient, BufferedSocket

pytestmark = pytest.mark.fast


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, mid: int, props: bytes = b"", retain: bool = False,
                   qos: int = 1) -> bytes:
    """A PUBLISH as a broker sends it (MQTT 5)."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + _varint(len(props)) + props
    return bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body) + len(payload)) + body + payload


SUBSCRIPTION_ID_7 = b"\x0b\x07"        # property 11 (subscription identifier) = 7


@pytest.fixture
def wired() -> Iterator[tuple[BufferedClient, socket.socket, list[tuple[Any, ...]]]]:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    got: list[tuple[Any, ...]] = []
    client.on_plain_publish = lambda topic, payload, mid, retain: got.append(("short", topic, payload, mid, retain))
    client.on_message = lambda _c, _u, m: got.append(("paho", m.topic, m.payload, m.mid, m.retain))
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = BufferedSocket(ours)
    yield client, broker, got
    ours.close()
    broker.close()


def test_one_recv_serves_many_packets_in_their_order(wired) -> None:
    client, broker, got = wired
    packets, expected = [], []
    for i in range(1, 301):
        topic, payload = f"entry/c{i % 7}/main/events", b'{"seq": %d}' % i
        if i % 50 == 0:      # a packet with properties (the catch-up subscription id): paho's own path
            packets.append(publish_packet(topic, payload, i, props=SUBSCRIPTION_ID_7))
            expected.append(("paho", topic, payload, i, False))
        else:
            packets.append(publish_packet(topic, payload, i, retain=i % 3 == 0))
            expected.append(("short", topic, payload, i, i % 3 == 0))
    data = b"".join(packets)
    assert len(data) < 65536
    broker.sendall(data)
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    assert got == expected
    sock = client._sock
    assert isinstance(sock, BufferedSocket)
    assert sock.reads == 1, "300 packets read with one recv"       # paho alone: 3 recv calls per packet
    assert sock.pending() == 0


def test_a_packet_split_across_reads_is_reassembled(wired) -> None:
    client, broker, got = wired
    big = b"\xff\xd8" + bytes(range(256)) * 400          # 100 KB: more than one read
    data = publish_packet("entry/a/main/snapshot/r1", big, 9) + publish_packet("entry/a/main/events", b"{}", 10)
    broker.sendall(data[:5])                              # the header arrives alone
    assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS and got == []
    broker.sendall(data[5:70000])
    client.loop_read()
    broker.sendall(data[70000:])
    for _ in range(5):
        client.loop_read()
    assert got == [("short", "entry/a/main/snapshot/r1", big, 9, False),
                   ("short", "entry/a/main/events", b"{}", 10, False)]


def test_other_packets_take_pahos_own_path(wired) -> None:
    client, broker, got = wired
    broker.sendall(publish_packet("entry/a/main/status", b"online", 0, qos=0)
                   + publish_packet("entry/a/main/events", b"{}", 3, props=b"\x02\x00\x00\x00\x3c"))  # expiry 60 s
    client.loop_read()
    assert [g[0] for g in got] == ["paho", "paho"]
    assert [g[1] for g in got] == ["entry/a/main/status", "entry/a/main/events"]


def test_the_peer_closing_is_seen() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = BufferedSocket(ours)
    broker.close()
    assert client.loop_read() != mqtt.MQTT_ERR_SUCCESS
    ours.close()


def test_ack_many_queues_pahos_puback_bytes_as_one_write() -> None:
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, manual_ack=True)
    mids = [5, 300, 65535, 1]
    for mid in mids:
        client.ack(mid, 1)
    one_by_one = [p["packet"] for p in client._out_packet]
    client._out_packet.clear()
    client.ack_many(mids)
    assert len(client._out_packet) == 1
    assert client._out_packet[0]["packet"] == b"".join(one_by_one)
    client._out_packet.clear()
    client.ack_many([])
    assert len(client._out_packet) == 0
