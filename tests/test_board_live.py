"""The live grid's fan-out against a real PostgreSQL: the board's triggers fire on the rows the
recorder writes (written here with plain SQL, as the recorder's commits would), the listener
coalesces what it hears, and /live streams what changed.

Behaviour pinned: a burst of notifications naming one door becomes one frame carrying the
door's latest state; a stream that (re)connects starts with the whole grid, including what
changed while it was away; a frame is encoded once and shared by every open stream; a patch
compares only the campuses it names, so its cost follows the burst, not the district.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import pytest

from district.board import close_app, create_app
from district.board import config as bcfg
from district.board import grid as grid_mod
from tests.conftest import wait_for
from tests.support_board import PASSWORDS, TEST_CONFIG, sign_in
from tests.support_pg import PgCluster, start_pg

CAMPUSES = [f"c{i:02d}" for i in range(40)]


class Board:
    def __init__(self) -> None:
        self.pg: PgCluster = start_pg()
        self.pg.apply_schema()
        self.sql("INSERT INTO campuses (campus, name) SELECT c, upper(c) FROM unnest(%s::text[]) AS c", (CAMPUSES,))
        self.sql("INSERT INTO doors (campus, door, online, last_seen, state, state_at) "
                 "SELECT c, 'main', true, now(), '{\"door\": \"locked\"}', now() FROM unnest(%s::text[]) AS c",
                 (CAMPUSES,))
        settings = bcfg.from_dict({"database": {"dsn": self.pg.dsn, "pool_size": 4},
                                   "web": {"listen": "tcp", "host": "127.0.0.1", "port": 0, "threads": 16}})
        self.app = create_app(settings, test_config=TEST_CONFIG)
        self.app.extensions["board_store"].add_user("victor", PASSWORDS["victor"], "viewer", "Victor Viewer")
        self.hub = self.app.extensions["board_hub"]
        wait_for(lambda: self.hub.latest and len(self.hub.latest["campuses"]) == len(CAMPUSES),
                 what="the listener's first grid")

    def sql(self, query: str, params: Any = None) -> None:
        with self.pg.connect(autocommit=True) as conn:
            conn.execute(query, params)

    def set_fault(self, campus: str, text: str) -> None:
        """One committed transaction changing a door's state (the trigger names the door)."""
        self.sql("UPDATE doors SET state = jsonb_build_object('door', 'open', 'fault', %s::text), state_at = now() "
                 "WHERE campus = %s AND door = 'main'", (text, campus))

    def settle(self) -> None:
        """Until the listener has heard everything sent so far and acted on it."""
        def quiet() -> bool:
            seen = self.hub.notifications
            time.sleep(0.3)
            return self.hub.notifications == seen and not self.hub._build_lock.locked()
        wait_for(quiet, what="the listener to settle")

    def close(self) -> None:
        close_app(self.app)
        self.pg.destroy()


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    b = Board()
    try:
        yield b
    finally:
        b.close()


class Stream:
    """/live read by a signed-in client on its own thread: the frames, decoded, in order."""

    def __init__(self, board: Board):
        self.client = board.app.test_client()
        assert sign_in(self.client, "victor").status_code == 303
        self.response = self.client.get("/live", buffered=False)
        assert self.response.status_code == 200
        self.frames: list[dict[str, Any]] = []
        self._chunks = iter(self.response.response)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for chunk in self._chunks:
            text = chunk.decode()
            if text.startswith("event: grid\n"):
                self.frames.append(json.loads(text.split("data: ", 1)[1]))
            if self._stop.is_set():
                return

    def naming(self, campus: str) -> list[dict[str, Any]]:
        return [c for f in self.frames[1:] for c in f["campuses"] if c["campus"] == campus]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)      # returns at the next frame or heartbeat
        self.response.close()


def test_a_burst_naming_one_door_is_one_frame_with_its_latest_state(board):
    """Twenty commits for one door while the listener is busy: it hears twenty notifications and
    sends one frame, showing the state after the last commit (coalesced, nothing lost)."""
    stream = Stream(board)
    try:
        wait_for(lambda: stream.frames, what="the first frame")
        before = board.hub.notifications
        with board.hub._build_lock:          # the listener busy with a refresh while the burst lands
            for i in range(1, 21):
                board.set_fault("c07", f"step {i}")
            wait_for(lambda: board.hub.notifications > before, what="the first notification heard")
        wait_for(lambda: board.hub.notifications >= before + 20, what="all twenty notifications")
        board.settle()
        wait_for(lambda: stream.naming("c07"), what="a frame for c07")
        time.sleep(1.0)                      # two heartbeats: nothing else for c07 is on its way
        frames = stream.naming("c07")
        assert len(frames) == 1, [f["doors"][0]["fault"] for f in frames]
        assert frames[0]["doors"][0]["fault"] == "step 20" and frames[0]["doors"][0]["state"] == "open"
        assert all(len(f["campuses"]) == 1 for f in stream.frames[1:])     # a delta, not the grid
    finally:
        stream.close()


def test_a_reconnecting_stream_gets_the_whole_grid_with_what_it_missed(board):
    first = Stream(board)
    try:
        wait_for(lambda: first.frames, what="the first frame")
        assert first.frames[0]["full"] is True and [c["campus"] for c in first.frames[0]["campuses"]] == CAMPUSES
        board.set_fault("c11", "before the drop")
        wait_for(lambda: first.naming("c11"), what="the change on the open stream")
        assert first.frames[-1]["full"] is False
    finally:
        first.close()
    board.set_fault("c12", "while away")           # nobody is streaming: the grid still moves
    board.settle()
    again = Stream(board)
    try:
        wait_for(lambda: again.frames, what="the first frame after reconnecting")
        full = again.frames[0]
        assert full["full"] is True and [c["campus"] for c in full["campuses"]] == CAMPUSES
        doors = {c["campus"]: c["doors"][0] for c in full["campuses"]}
        assert doors["c12"]["fault"] == "while away" and doors["c11"]["fault"] == "before the drop"
    finally:
        again.close()


def test_one_frame_is_encoded_once_for_every_stream(board):
    a, b = board.hub.subscribe(), board.hub.subscribe()
    try:
        board.settle()
        for q in (a, b):
            while not q.empty():
                q.get_nowait()
        board.set_fault("c20", "shared")
        wait_for(lambda: not a.empty() and not b.empty(), what="the frame on both queues")
        fa, fb = a.get_nowait(), b.get_nowait()
        assert isinstance(fa, bytes) and fa is fb          # one json.dumps, the same bytes for both
        assert b'"fault":"shared"' in fa
    finally:
        board.hub.unsubscribe(a)
        board.hub.unsubscribe(b)


def test_a_patch_compares_only_the_campuses_it_names(board, monkeypatch):
    board.settle()
    calls: list[str] = []
    real = grid_mod.campus_signature
    monkeypatch.setattr(grid_mod, "campus_signature", lambda c: calls.append(c["campus"]) or real(c))
    patches = board.hub.patches
    board.set_fault("c30", "one door")
    wait_for(lambda: board.hub.patches > patches, what="the patch")
    board.settle()
    assert calls and set(calls) == {"c30"}, calls        # not every campus of the district

