"""The board's WSGI server: cheroot (as the campus panel), behind nginx in production.

``web.listen = "unix"``: a Unix socket only nginx can reach (deploy/nginx/district-board.conf
terminates TLS, bounds sizes and times, limits rates); nginx's X-Forwarded-For/-Proto are
trusted only there (ProxyFix, one hop), so the sign-in throttle sees the real address and
cookies are Secure. ``web.listen = "tcp"``: host:port directly (demo, tests). Each live
stream holds one worker thread; the grid hub caps streams at three quarters of the threads.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from typing import Any, Callable

from cheroot import wsgi
from werkzeug.middleware.proxy_fix import ProxyFix

from . import close_app, create_app
from .config import BoardSettings

log = logging.getLogger(__name__)
SOCKET_MODE = 0o660


class BoardServer:
    def __init__(self, settings: BoardSettings, test_config: dict[str, Any] | None = None,
                 now: Callable[[], datetime] | None = None):
        self.settings = settings
        web = settings.web
        self.unix = web.listen == "unix"
        self.port = web.port
        self.app = create_app(settings, test_config, now=now)
        if self.unix:
            self.app.wsgi_app = ProxyFix(self.app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.unix:
            return f"unix:{self.settings.web.socket_path}"
        return f"http://{self.settings.web.host}:{self.port}"

    def start(self) -> "BoardServer":
        web = self.settings.web
        bind: Any = web.socket_path if self.unix else (web.host, web.port)
        server = wsgi.Server(bind, self.app, numthreads=web.threads, max=web.threads, server_name="district-board",
                             timeout=10, shutdown_timeout=5, request_queue_size=64)
        server.prepare()
        if self.unix:
            os.chmod(web.socket_path, SOCKET_MODE)
        else:
            self.port = server.bind_addr[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve, name="board-server", daemon=True)
        self._thread.start()
        log.info("district board serving on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.app.extensions["board_hub"].close()      # streams return, freeing their threads
        self._server.stop()
        close_app(self.app)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
