"""The district demo as a newcomer runs it: ``entry-buzzer simulate --district 2`` as a process
(private Mosquitto and PostgreSQL, simulated campuses, recorder, board). Signs in to the board
with the printed operator password and checks that every simulated door is on the grid."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support_mqtt import free_port

pytestmark = [pytest.mark.process, pytest.mark.postgres, pytest.mark.broker]

ROOT = Path(__file__).resolve().parent.parent


def test_district_demo_starts_everything_and_the_board_shows_every_door(tmp_path):
    port = free_port()
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "entry_buzzer", "simulate", "--district", "2",
                                 "--port", str(port),
                                 "--duration", "120"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in out.read_text():
            assert proc.poll() is None, out.read_text()[-3000:]
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        text = out.read_text()
        password = re.search(r"sign in as operator / (\S+)", text).group(1)
        assert len(re.findall(r"campus panel \S+: http://127\.0\.0\.1:\d+/", text)) == 2
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        login = opener.open(f"{base}/login").read().decode()
        token = re.search(r'name="csrf_token" value="([^"]*)"', login).group(1)
        data = urllib.parse.urlencode({"username": "operator", "password": password, "csrf_token": token,
                                       "next": "/"}).encode()
        assert opener.open(f"{base}/login", data=data).status == 200       # redirected to the grid
        deadline = time.monotonic() + 60
        while True:
            grid = json.loads(opener.open(f"{base}/api/grid").read())
            online = sorted(f"{c['campus']}/{d['door']}" for c in grid["campuses"] for d in c["doors"] if d["online"])
            if len(online) == 4:
                break
            assert time.monotonic() < deadline, online
            time.sleep(0.5)
        assert {c["campus"] for c in grid["campuses"]} == {"lincoln-elementary", "washington-middle"}
        assert all(c["panel_url"].startswith("http://127.0.0.1:") for c in grid["campuses"])
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, out.read_text()[-3000:]
    pg_dir = re.search(r"psql 'host=(\S+)/sock ", out.read_text()).group(1)
    assert not Path(pg_dir).exists()            # the private cluster was stopped and removed
