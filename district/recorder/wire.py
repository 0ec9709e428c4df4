"""The recorder's paho client, made cheaper per message without changing what it does.

paho reads a packet with several ``recv`` calls (the fixed header byte by byte, then the
rest) and, with ``manual_ack``, sends every PUBACK with its own ``send`` and its own wake-up of
the network thread. Draining a backlog of small messages, those system calls were the largest
cost of the whole recorder. Two changes, both inside paho's documented behaviour:

- ``BufferedSocket`` wraps the connected socket (plain or TLS: the wrapping happens after
  paho's own TLS handshake) so one ``recv(256 KiB)`` serves many packets. It exposes
  ``pending()``, the hook paho's loop already uses for TLS sockets: while bytes are buffered
  the loop does not wait in ``select`` and reads on. ``BufferedClient.loop_read`` then
  handles every packet already buffered before returning to the loop (bounded, so writes and
  keepalives still get their turn).
- ``BufferedClient._handle_publish`` takes a short path for the feed's ordinary packet (MQTT 5,
  QoS 1 with manual ack, a topic, no properties): it reads topic, packet id and payload and
  calls ``on_plain_publish(topic, payload, mid, retain)``, skipping paho's per-message
  ``Properties``, ``MQTTMessage`` (with its lock and condition) and topic matcher. Any other
  packet (properties such as the catch-up subscription identifier, QoS 0 or 2, a topic alias,
  anything odd) goes through paho's own handler and ``on_message`` unchanged.
- Whole packets first: when a plain QoS 1 publish lies entirely in the buffer (nearly always
  in a backlog), ``BufferedClient._packet_read`` takes it straight from there
  (``BufferedSocket.plain_publish``): header, topic, packet id and payload parsed from the
  buffer in one step, the payload copied once, instead of paho's three or more ``recv``
  calls, its growing ``bytearray`` and its per-packet state dict. A packet not wholly
  buffered yet, or any other packet, is left in the buffer for paho's own reading.
- ``BufferedClient.ack_many`` queues the PUBACKs of one committed batch as one write: the same
  bytes as paho's ``ack()`` (PUBACK, remaining length 2, packet id; MQTT 5 allows omitting
  the reason code when it is success), one wake-up, one ``send``.

Nothing else changes: packets are parsed, ordered and acknowledged exactly as paho does.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable

import paho.mqtt.client as mqtt

PUBACK = 0x40
READ_SIZE = 262144
PACKETS_PER_READ = 1000      # packets handled per loop turn at most (then writes, keepalive)


class BufferedSocket:
    """A connected (plain or TLS) socket whose ``recv`` reads ahead into a buffer."""

    def __init__(self, sock: Any, size: int = READ_SIZE):
        self.sock = sock
        self.size = size
        self._buf = b""
        self._pos = 0
        self.reads = 0           # recv calls on the real socket (tests count them)

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self.sock.recv(max(n, self.size))   # may raise BlockingIOError / SSLWantReadError
            self.reads += 1
            if len(data) <= n:          # all of it wanted (or b"": the peer closed)
                return data
            self._buf, self._pos = data, 0
        start = self._pos
        self._pos = min(start + n, len(self._buf))
        return self._buf[start:self._pos]

    def plain_publish(self) -> tuple[str, bytes, int, bool] | None:
        """The next packet if it is a plain publish (QoS 1, no properties, a topic: the
        feed's ordinary message) lying wholly in the buffer: (topic, payload, packet id,
        retain), consumed. Anything else, or a packet not wholly buffered yet: None, and the
        buffer is left as it was for paho to read."""
        buf, pos = self._buf, self._pos
        size = len(buf)
        if size - pos < 2 or buf[pos] & 0xF6 != 0x32:        # PUBLISH, QoS 1 (dup and retain: any)
            return None
        length, shift, i = 0, 0, pos + 1
        while True:                                         # remaining length: 1-4 bytes, 7 bits each
            if i >= size or shift > 21:
                return None
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            i, shift = i + 1, shift + 7
            if byte < 0x80:
                break
        end = i + length
        if end > size or length < 5:
            return None
        at = i + 2 + (buf[i] << 8 | buf[i + 1])             # after the topic: packet id (2), properties
        if at == i + 2 or at + 3 > end or buf[at + 2] != 0:   # no topic (an alias) or properties: paho's
            return None
        try:
            topic = buf[i + 2:at].decode()
        except UnicodeDecodeError:
            return None
        self._pos = end
        return topic, buf[at + 3:end], buf[at] << 8 | buf[at + 1], bool(buf[pos] & 0x01)

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        """Bytes readable without waiting: ours, plus those TLS has decrypted but not handed out."""
        inner = self.sock.pending() if hasattr(self.sock, "pending") else 0
        return self.buffered() + inner

    def send(self, data: bytes | bytearray) -> int:
        return int(self.sock.send(data))

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)

    def close(self) -> None:
        self._buf, self._pos = b"", 0
        self.sock.close()

    def __getattr__(self, name: str) -> Any:      # settimeout, getpeercert, ...
        return getattr(self.sock, name)


class BufferedClient(mqtt.Client):
    """paho's client reading through a ``BufferedSocket`` and acknowledging in bulk."""

    on_plain_publish: Callable[[str, bytes, int, bool], None] | None = None

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        fast = self.on_plain_publish
        command, packet = self._in_packet["command"], self._in_packet["packet"]
        if fast is None or not self._manual_ack or self._protocol != mqtt.MQTTv5 or command & 0x06 != 0x02:
            return super()._handle_publish()
        size = len(packet)
        tlen = (packet[0] << 8 | packet[1]) if size >= 2 else 0
        at = 2 + tlen                      # packet id (2 bytes), then the properties' length
        if tlen == 0 or size < at + 3 or packet[at + 2] != 0:
            return super()._handle_publish()
        try:
            topic = packet[2:at].decode()
        except UnicodeDecodeError:
            return super()._handle_publish()
        fast(topic, bytes(memoryview(packet)[at + 3:]), packet[at] << 8 | packet[at + 1], bool(command & 0x01))
        return mqtt.MQTT_ERR_SUCCESS

    def _packet_read(self) -> mqtt.MQTTErrorCode:
        """A plain publish wholly buffered is taken from the buffer in one step; anything
        else, and a packet paho has begun reading, goes through paho's own reading."""
        sock, fast = self._sock, self.on_plain_publish
        if fast is not None and self._in_packet["command"] == 0 and isinstance(sock, BufferedSocket) \
                and self._manual_ack and self._protocol == mqtt.MQTTv5:
            packet = sock.plain_publish()
            if packet is not None:
                fast(*packet)
                with self._msgtime_mutex:
                    self._last_bytes_received = mqtt.time_func()   # as paho does (keepalive)
                return mqtt.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        n = 1
        while rc == mqtt.MQTT_ERR_SUCCESS and n < PACKETS_PER_READ:
            sock = self._sock
            if not isinstance(sock, BufferedSocket) or sock.pending() == 0:
                break
            rc = super().loop_read(max_packets)
            n += 1
        return rc

    def ack_many(self, mids: Iterable[int]) -> mqtt.MQTTErrorCode:
        """PUBACKs (QoS 1, manual ack) for ``mids``, in this order, as one write."""
        packet = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
        if not packet:
            return mqtt.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, packet, 0, 1)
