"""An independent panel live-stream client process: prints '<perf_counter> <type>' for each
journal event that arrives on /events (what a dashboard in a browser receives).

    python -m bench.sse_client PORT SESSION_COOKIE
"""

from __future__ import annotations

import http.client
import json
import sys
import time


def main() -> None:
    port, cookie = int(sys.argv[1]), sys.argv[2]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/events", headers={"Cookie": cookie, "Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        print(f"error {resp.status}", flush=True)
        return
    print("connected", flush=True)
    kind = ""
    while True:
        line = resp.fp.readline()
        if not line:
            return
        now = time.perf_counter()
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            kind = text[7:]
        elif text.startswith("data: ") and kind == "journal":
            event_type = json.loads(text[6:]).get("type", "-")
            sys.stdout.write(f"{now:.9f} {event_type} -\n")
            sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, OSError):
        pass
