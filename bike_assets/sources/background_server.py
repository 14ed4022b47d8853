"""An HTTP server answering from a daemon thread of this process, for stand-ins and tests.

The Paris API stand-in (`fake_paris_api.FakeParisApi`) and the tests' `LocalHTTPServer` both
serve this way. It lives in the package, beside the stand-in, because tests may import the
package and the package may not import tests. A subclass builds its server; this class starts
it, and `stop()` (or leaving the `with` block, also on an error) shuts it down, closes its
socket and joins its thread, so nothing keeps listening after a test.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Self


class BackgroundHTTPServer(ABC):
    """`start()` serves `_make_server()` from a daemon thread; `stop()` tears it all down."""

    # shutdown() waits up to one poll interval, on every stop
    poll_interval_s: float = 0.05
    thread_name: str | None = None  # None: threading's default name

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _make_server(self) -> ThreadingHTTPServer:
        """A server bound to its address, not serving yet."""

    def start(self) -> Self:
        server = self._make_server()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self.poll_interval_s},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        """The port it listens on (the OS's choice when bound to port 0)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
