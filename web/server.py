"""The panel's production WSGI server: cheroot, a threaded server with built-in TLS.

Why cheroot rather than waitress: waitress cannot terminate TLS, and the panel must
serve HTTPS on the Pi itself (no reverse proxy to install and keep patched). cheroot
(CherryPy's server) is pure Python, speaks TLS through the stdlib ``ssl`` module, writes
each streamed chunk straight to the socket (Server-Sent Events arrive at once), and
keeps idle keep-alive connections out of its worker threads. Using the same server for
plain HTTP (simulated campus, localhost) means the tests exercise the production path.

Each live stream holds one worker thread; the stream hub caps streams at three quarters
of ``web.threads`` so ordinary requests always find a free thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from controller import config as cfg

from . import close_app, create_app

log = logging.getLogger(__name__)


def _resolve(value: str) -> str:
    return str(cfg._secret_path(value)) if value else value


class WebServer:
    """A daemon Service: ``start()`` binds and serves in a thread, ``stop()`` ends streams then the server."""

    name = "web"

    def __init__(self, controller: Any, settings: cfg.Settings | None = None,
                 test_config: dict[str, Any] | None = None, host: str | None = None, port: int | None = None):
        self.controller = controller
        self.settings = settings or controller.settings
        web = self.settings.web
        self.host = host if host is not None else web.host
        self.port = port if port is not None else web.port
        self.tls = bool(web.tls_cert_file and web.tls_key_file)
        self.app = create_app(controller, self.settings, test_config)
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    @classmethod
    def for_controller(cls, controller: Any) -> "WebServer":
        return cls(controller)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def streams(self) -> int:
        return self.app.extensions["stream_hub"].count

    def start(self) -> None:
        """Bind now (so a busy port fails start-up loudly), then serve on a thread."""
        web = self.settings.web
        server = wsgi.Server((self.host, self.port), self.app, numthreads=web.threads, max=web.threads,
                             server_name="entry-panel", timeout=10, shutdown_timeout=5,
                             request_queue_size=64)
        if self.tls:
            server.ssl_adapter = BuiltinSSLAdapter(_resolve(web.tls_cert_file), _resolve(web.tls_key_file))
        server.prepare()
        self.port = server.bind_addr[1]       # the real port when 0 was asked for
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="web-server", daemon=True)
        self._thread.start()
        log.info("panel serving on %s", self.url)

    def _serve(self) -> None:
        assert self._server is not None
        try:
            self._server.serve()
        except Exception as exc:  # the door keeps working without the panel; health says why
            self._error = str(exc)
            log.exception("panel server stopped unexpectedly")

    def stop(self) -> None:
        """End every live stream, stop the server, close the account store. Safe to call twice."""
        if self._server is None:
            return
        self.app.extensions["stream_hub"].close()     # streams return, freeing their threads
        self._server.stop()
        close_app(self.app)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None

    def health(self) -> dict[str, Any]:
        running = self._server is not None and self._thread is not None and self._thread.is_alive()
        return {"running": running, "url": self.url, "tls": self.tls, "streams": self.streams,
                "error": self._error}
