"""The panel's WSGI server: cheroot, a threaded server, behind nginx in production.

In production (``web.listen = "unix"``) cheroot serves only a Unix socket and the shipped
nginx site (deploy/nginx/entry-buzzer.conf) is the front the school network talks to: it
terminates TLS, limits header and body sizes, times out slow and idle clients, and limits
connections and request rates per address. Why: cheroot does the TLS handshake in its one
accept thread and reads headers without a size limit, so one idle TCP connection froze the
panel for 10 s and 100 MB of headers grew the daemon by 460 MB (issue 10). nginx is
event-driven and built for hostile clients; what reaches the socket is a complete, bounded
request. nginx's X-Forwarded-For/-Proto are trusted only on the socket (ProxyFix), so the
sign-in throttle sees the real client address and cookies are Secure.

``web.listen = "tcp"`` serves host:port directly (simulated campus, localhost, tests; plain
HTTP off loopback is refused by the config unless ``web.allow_plain_http``). cheroot writes
each streamed chunk straight to the socket (Server-Sent Events arrive at once).

Each live stream holds one worker thread; the stream hub caps streams at three quarters
of ``web.threads`` so ordinary requests always find a free thread.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from werkzeug.middleware.proxy_fix import ProxyFix

from controller import config as cfg
from controller.api import DoorApi

from . import close_app, create_app

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
"""The socket: the service user and its group (nginx's www-data is added to it by the installer)."""


def _resolve(value: str) -> str:
    return str(cfg.secret_path(value)) if value else value


class WebServer:
    """A daemon Service: ``start()`` binds and serves in a thread, ``stop()`` ends streams then the server."""

    name = "web"

    def __init__(self, controller: DoorApi, settings: cfg.Settings | None = None,
                 test_config: dict[str, Any] | None = None, host: str | None = None, port: int | None = None,
                 station: Any = None):
        self.controller = controller
        self.settings = settings or controller.settings
        web = self.settings.web
        self.host = host if host is not None else web.host
        self.port = port if port is not None else web.port
        self.socket_path = web.socket_path if web.listen == "unix" and host is None else None
        self.tls = bool(web.tls_cert_file and web.tls_key_file) and self.socket_path is None
        self.app = create_app(controller, self.settings, test_config, station=station)
        if self.socket_path is not None:
            # Only nginx can reach the socket (mode 0660 in a 0750 directory), and it replaces
            # any client-sent X-Forwarded-For with the address it saw: one proxy hop to trust.
            self.app.wsgi_app = ProxyFix(self.app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: str | None = None

    @property
    def url(self) -> str:
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def streams(self) -> int:
        return self.app.extensions["stream_hub"].count

    def start(self) -> None:
        """Bind now (so a busy port fails start-up loudly), then serve on a thread."""
        web = self.settings.web
        bind: str | tuple[str, int] = self.socket_path if self.socket_path is not None else (self.host, self.port)
        server = wsgi.Server(bind, self.app, numthreads=web.threads, max=web.threads,
                             server_name="entry-panel", timeout=10, shutdown_timeout=5,
                             request_queue_size=64)
        if self.tls:
            server.ssl_adapter = BuiltinSSLAdapter(_resolve(web.tls_cert_file), _resolve(web.tls_key_file))
        server.prepare()
        if self.socket_path is not None:
            os.chmod(self.socket_path, SOCKET_MODE)   # cheroot leaves it 0777; the directory guards meanwhile
        else:
            self.port = server.bind_addr[1]       # the real port when 0 was asked for
        if cfg.plain_http_exposed(cfg.with_overrides(self.settings, web={"host": self.host})):
            log.warning("panel serves PLAIN HTTP on %s (web.allow_plain_http = true): passwords and "
                        "session cookies cross the network unencrypted; use the nginx front", self.url)
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
        if self.socket_path is not None:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass

    def health(self) -> dict[str, Any]:
        running = self._server is not None and self._thread is not None and self._thread.is_alive()
        return {"running": running, "url": self.url, "tls": self.tls, "streams": self.streams,
                "error": self._error}
