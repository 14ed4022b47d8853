"""`bike stack` process handling in seconds, on the services that need no Postgres (Pushgateway,
Alertmanager, Prometheus): up waits for them, status sees them, a service that dies is reported
DOWN, restart brings it back, down leaves no process (and a second down is a no-op)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bike_assets import stack
from bike_assets_tests.local_http import free_port
from bike_assets_tests.stack import require_binary

pytestmark = pytest.mark.stack

SERVICES = ["pushgateway", "alertmanager", "prometheus"]


@pytest.fixture
def config(tmp_path: Path) -> stack.StackConfig:
    for name in ("prometheus", "pushgateway", "alertmanager"):
        require_binary(name)
    return stack.StackConfig.from_env(
        {
            "BIKE_DATA_DIR": str(tmp_path),
            "PATH": os.environ.get("PATH", "/usr/bin"),
            "PROMETHEUS_PORT": str(free_port()),
            "PUSHGATEWAY_PORT": str(free_port()),
            "ALERTMANAGER_PORT": str(free_port()),
            "DISCORD_WEBHOOK_URL": "http://127.0.0.1:9/api/webhooks/1/test-only",
        }
    )


def test_up_status_restart_down(config: stack.StackConfig) -> None:
    try:
        started = stack.up(config, SERVICES, echo=lambda _line: None)
        assert [s.name for s in started] == SERVICES  # the stack's start order
        assert all(alive for _, alive in stack.status(config))
        with pytest.raises(stack.StackError, match="already running"):
            stack.up(config, SERVICES, echo=lambda _line: None)
        # the webhook reaches Alertmanager through a file only the user can read
        assert oct((config.stack_dir / "alertmanager.yml").stat().st_mode & 0o777) == "0o600"

        pushgateway = started[0]
        os.killpg(pushgateway.pid, signal.SIGKILL)
        # a signal is delivered asynchronously: on a busy machine the process may still be
        # scheduled out for a moment after kill() returns
        deadline = time.monotonic() + 10
        states = {s.name: alive for s, alive in stack.status(config)}
        while states["pushgateway"] and time.monotonic() < deadline:
            time.sleep(0.05)
            states = {s.name: alive for s, alive in stack.status(config)}
        assert states["pushgateway"] is False and states["prometheus"] is True

        again = stack.restart(config, "pushgateway")
        assert again.pid != pushgateway.pid
        assert all(alive for _, alive in stack.status(config))
    finally:
        groups = [s.pid for s in stack.read_state(config)]
        stack.down(config, echo=lambda _line: None)
    assert stack.status(config) == []
    assert all(stack.group_members(group) == [] for group in groups)
    stack.down(config, echo=lambda _line: None)  # nothing running: a no-op, not an error
