"""Tests that need a real service of the machine (Postgres, Prometheus, the whole stack).

A test marked `stack` calls `require(...)` for what it needs. On a laptop without it the test is
skipped, and the skip says how to install it; with `BIKE_REQUIRE_STACK=1` (set by `.ci/run`) a
missing service fails the test instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

REQUIRED = os.environ.get("BIKE_REQUIRE_STACK", "").strip() in ("1", "true", "yes")
APT_HINT = (
    "sudo apt-get install -y prometheus prometheus-pushgateway prometheus-alertmanager "
    "(or run `bash .ci/run`, which installs them)"
)
POSTGRES_HINT = "start PostgreSQL 15 on 127.0.0.1:5432 with trust auth (see deploy/README.md)"


def missing(what: str, hint: str) -> None:
    """Skip (laptop) or fail (CI) because `what` is not there."""
    message = f"{what} is not available: {hint}"
    if REQUIRED:
        pytest.fail(f"BIKE_REQUIRE_STACK=1 and {message}")
    pytest.skip(message)


def require_binary(name: str, hint: str = APT_HINT) -> str:
    """The path of an executable, e.g. `prometheus`, `promtool`, `alertmanager`."""
    for candidate in (name, f"prometheus-{name}"):
        path = shutil.which(candidate) or shutil.which(candidate, path="/usr/bin:/usr/sbin")
        if path:
            return path
    missing(f"the `{name}` binary", hint)
    raise AssertionError("unreachable")


def require_port(host: str, port: int, what: str, hint: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError:
        missing(f"{what} on {host}:{port}", hint)


def require_postgres(host: str = "127.0.0.1", port: int = 5432) -> None:
    require_port(host, port, "PostgreSQL", POSTGRES_HINT)
