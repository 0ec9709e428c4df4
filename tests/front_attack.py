"""``python -m tests.front_attack KIND COUNT HOST PORT``: hostile clients on the school network,
held open until this process gets SIGTERM; then one JSON line of what happened.

Runs in its own process so the attackers' threads never compete with the measured staff
client for the GIL. Every slot reconnects when the server drops it (what an attacker does to
keep a server down), with a short pause so the test does not become a CPU benchmark.

KIND:
  idle_tcp      connect and send nothing (no TLS ClientHello)
  idle_tls      complete the TLS handshake, then send nothing
  slow_headers  TLS, a request line, then one more header line every 3 s, never finishing
  big_headers   TLS, a request line, then 100 MB of distinct header lines in 64 KB chunks
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import threading
import time
from typing import Any

CHUNK = 64 * 1024
BIG = 100 * 1024 * 1024
stop = threading.Event()
lock = threading.Lock()
stats: dict[str, Any] = {"connections": 0, "established": 0, "dropped_by_server": 0, "errors": 0,
                         "sent_all_100mb": 0,
                         "max_bytes_sent_per_connection": 0}


def _ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _count(key: str, n: int = 1) -> None:
    with lock:
        stats[key] += n


def _hold_idle(sock: Any) -> None:
    sock.settimeout(0.5)
    while not stop.is_set():
        try:
            if sock.recv(1) == b"":
                _count("dropped_by_server")
                return
        except (socket.timeout, TimeoutError):
            continue
        except ssl.SSLWantReadError:
            continue


def _slow_headers(sock: Any) -> None:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
    n = 0
    while not stop.wait(3.0):
        n += 1
        sock.sendall(b"X-Slow-%d: %d\r\n" % (n, n))


def _big_headers(sock: Any) -> None:
    sent = 0
    sock.settimeout(10)
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        i = 0
        while sent < BIG and not stop.is_set():
            lines = []
            size = 0
            while size < CHUNK:
                line = b"X-Flood-%d: %s\r\n" % (i, b"v" * 40)
                lines.append(line)
                size += len(line)
                i += 1
            sock.sendall(b"".join(lines))
            sent += size
    finally:
        with lock:
            stats["max_bytes_sent_per_connection"] = max(stats["max_bytes_sent_per_connection"], sent)
    if sent >= BIG:
        _count("sent_all_100mb")


def _slot(kind: str, host: str, port: int, ready: threading.Event) -> None:
    ctx = _ctx()
    while not stop.is_set():
        sock: Any = None
        try:
            raw = socket.create_connection((host, port), timeout=10)
            _count("connections")
            sock = raw if kind == "idle_tcp" else ctx.wrap_socket(raw, server_hostname="localhost")
            if not ready.is_set():
                ready.set()
                _count("established")
            if kind in ("idle_tcp", "idle_tls"):
                _hold_idle(sock)
            elif kind == "slow_headers":
                _slow_headers(sock)
            else:
                _big_headers(sock)
        except (OSError, ssl.SSLError):
            if not stop.is_set():
                _count("dropped_by_server")
        finally:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
        stop.wait(0.05)


def main(kind: str, count: int, host: str, port: int) -> int:
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    readies = []
    for _ in range(count):
        ready = threading.Event()
        readies.append(ready)
        threading.Thread(target=_slot, args=(kind, host, port, ready), daemon=True).start()
        time.sleep(0.01)
    for ready in readies:
        ready.wait(60)
    print("holding", sum(r.is_set() for r in readies), flush=True)
    while not stop.wait(0.2):
        pass
    time.sleep(0.5)
    with lock:
        print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
