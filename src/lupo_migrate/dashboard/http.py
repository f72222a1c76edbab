"""The dashboard's HTTP side: what is served, to whom, with which headers.

Apart from :mod:`lupo_migrate.dashboard` (polling and the snapshot): ``GET /`` is the page,
``GET /api/state`` the snapshot as JSON; any other path is 404, any other method 405, and a
request naming another host than 127.0.0.1 or localhost 403 (DNS rebinding). The handler
threads only read the snapshot they are given.
"""

from __future__ import annotations

import http.server
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit

from lupo_migrate.dashboard.page import PAGE

__all__ = ["HOST", "handler"]

#: The only address the dashboard listens on.
HOST: Final = "127.0.0.1"
#: Host names a request may name (anything else is refused: DNS rebinding).
_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})


def handler(state_json: Callable[[], bytes]) -> type[http.server.BaseHTTPRequestHandler]:
    """The request handler class of one dashboard, whose snapshot *state_json* gives."""
    page = PAGE.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "lupo-migrate-dashboard"

        def do_GET(self) -> None:
            host = (self.headers.get("Host") or HOST).rsplit(":", 1)[0].strip("[]").lower()
            if host not in _HOSTS:
                self._answer(403, b"only 127.0.0.1 and localhost are served\n")
                return
            path = urlsplit(self.path).path
            if path == "/":
                self._answer(200, page, "text/html; charset=utf-8")
            elif path == "/api/state":
                self._answer(200, state_json(), "application/json")
            else:
                self._answer(404, b"not found: the dashboard serves / and /api/state\n")

        def _refuse(self) -> None:
            self._answer(405, b"read-only: only GET is served\n", allow=True)

        do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse
        do_OPTIONS = do_TRACE = do_CONNECT = _refuse

        def _answer(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            *,
            allow: bool = False,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", _CSP)
            if allow:
                self.send_header("Allow", "GET")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args  # the library prints nothing

    return Handler


#: The page loads nothing from elsewhere; its script and styles are inline.
_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
    " connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)
