"""Debian's Chromium started by the bench itself, for the intercom benchmark.

Playwright attaches over CDP; because the bench started the browser, it knows the browser's
process tree and can pause its own renderers (SIGSTOP/SIGCONT), never another process.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--autoplay-policy=no-user-gesture-required", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream"]


class OwnChromium:
    """Debian's Chromium started by the bench itself (Playwright attaches over CDP), so the
    bench knows its process tree and can pause its own renderers (never another process)."""

    def __init__(self, pw: Any, prefix: list[str] | None = None):
        self.profile = tempfile.TemporaryDirectory(prefix="bench-chromium-")
        self.proc = subprocess.Popen(
            [*(prefix or []), "/usr/bin/chromium", "--headless=new", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile.name}", *CHROMIUM_ARGS, "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        url = None
        for line in self.proc.stderr:
            if (m := re.search(r"DevTools listening on (ws://\S+)", line)):
                url = m.group(1)
                break
        if url is None:
            raise RuntimeError("chromium did not start")
        self._drain = threading.Thread(target=lambda: [None for _ in self.proc.stderr or []], daemon=True)
        self._drain.start()
        self.browser = pw.chromium.connect_over_cdp(url)

    def new_context(self, **kw: Any) -> Any:
        return self.browser.new_context(**kw)

    def renderers(self) -> list[int]:
        """Renderer processes descending from this Chromium (read from /proc)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        mine, grew = {self.proc.pid}, True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in mine and pid not in mine}
            mine |= more
            grew = bool(more)
        out = []
        for pid in mine:
            try:
                if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(pid)
            except OSError:
                continue
        return out

    def pause_renderers(self, paused: bool) -> None:
        for pid in self.renderers():
            os.kill(pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self.proc.terminate()
            self.proc.wait(20)
            self._drain.join(5)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.profile.cleanup()
