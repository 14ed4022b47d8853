"""A real HTTP server on 127.0.0.1 for tests: records every request, answers a set status.

Used as a Discord webhook and as a Prometheus Pushgateway stand-in, so the clients are tested
over a real socket (headers, body encoding, timeouts) and nothing under test is mocked.

    with LocalHTTPServer(status=204) as server:
        requests.post(f"{server.url}/hook", json={"a": 1})
        assert server.requests[0].json() == {"a": 1}

`status`, `delay_s` and `body` can be changed while the server runs; `free_port()` gives a port
with nothing listening (an "unreachable" endpoint).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bike_assets.sources.background_server import BackgroundHTTPServer


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def free_port() -> int:
    """A port nothing listens on right now (bound then released by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalHTTPServer(BackgroundHTTPServer):
    """ThreadingHTTPServer on a free 127.0.0.1 port, in a daemon thread."""

    poll_interval_s = 0.02  # stop() waits up to one interval, in every test

    def __init__(
        self,
        *,
        status: int = 200,
        delay_s: float = 0.0,
        body: bytes = b"",
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        super().__init__()
        self.status = status
        self.delay_s = delay_s
        self.body = body
        self.content_type = content_type
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._received = threading.Condition(self._lock)

    # -- lifecycle ------------------------------------------------------------------------------
    def _make_server(self) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                owner._record(
                    RecordedRequest(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                    )
                )
                if owner.delay_s > 0:
                    time.sleep(owner.delay_s)
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", owner.content_type)
                    self.send_header("Content-Length", str(len(owner.body)))
                    self.end_headers()
                    if owner.body and self.command != "HEAD":
                        self.wfile.write(owner.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to answer to

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True  # a delayed handler must not block shutdown
        return server

    # -- inspection -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived (or the timeout), return them all."""
        deadline = time.monotonic() + timeout_s
        with self._received:
            while len(self._requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._received.wait(left)
            return list(self._requests)

    def _record(self, request: RecordedRequest) -> None:
        with self._received:
            self._requests.append(request)
            self._received.notify_all()
