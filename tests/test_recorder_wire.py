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

from bench.campus_wire import varint
from district.recorder.wire import BufferedClient, BufferedSocket

pytestmark = pytest.mark.fast


def publish_packet(topic: str, payload: bytes, mid: int, props: bytes = b"", retain: bool = False,
                   qos: int = 1) -> bytes:
    """A PUBLISH as a broker sends it (MQTT 5)."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", mid) if qos else b"") + varint(len(props)) + props
    return bytes([0x30 | qos << 1 | int(retain)]) + varint(len(body) + len(payload)) + body + payload


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


def test_a_whole_buffered_plain_publish_is_taken_from_the_buffer_in_one_step() -> None:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    sock = BufferedSocket(ours)
    whole = publish_packet("entry/a/main/events", b'{"seq": 1}', 7, retain=True)
    with_props = publish_packet("entry/a/main/events", b"{}", 8, props=SUBSCRIPTION_ID_7)
    big = publish_packet("entry/a/main/snapshot/r", b"\xff\xd8" + b"x" * 300_000, 9)   # larger than one read
    broker.sendall(whole + with_props + big[:1000])
    sock.recv(1)                                 # fills the buffer (paho reads a command byte) ...
    sock._pos = 0                                # ... and is put back as if unread
    assert sock.plain_publish() == ("entry/a/main/events", b'{"seq": 1}', 7, True)
    before = sock.buffered()
    assert sock.plain_publish() is None and sock.buffered() == before        # properties: left for paho
    assert sock.recv(len(with_props)) == with_props
    assert sock.plain_publish() is None and sock.buffered() == 1000          # not wholly buffered: left
    ours.close()
    broker.close()


def test_the_short_path_sees_every_packet_paho_would_and_keeps_their_order(wired) -> None:
    """Whole buffered packets, packets paho began reading, other packets: one sequence, in order."""
    client, broker, got = wired
    packets, expected = [], []
    for i in range(1, 41):
        payload = b"\xff\xd8" + bytes([i]) * (40_000 if i % 4 == 0 else 50)
        props = SUBSCRIPTION_ID_7 if i % 10 == 0 else b""
        packets.append(publish_packet(f"entry/c/main/x{i}", payload, i, props=props))
        expected.append(("paho" if props else "short", f"entry/c/main/x{i}", payload, i, False))
    data = b"".join(packets)
    for at in range(0, len(data), 50_000):      # arrives in pieces that cut packets anywhere
        broker.sendall(data[at:at + 50_000])
        for _ in range(3):
            client.loop_read()
    for _ in range(20):
        client.loop_read()
    assert got == expected
