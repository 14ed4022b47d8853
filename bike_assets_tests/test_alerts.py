"""DiscordResource against a real HTTP server on 127.0.0.1 (no mocks of the client)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bike_assets.resources.alerts import DEDUP_FILE, LEVEL_COLORS, DiscordResource

try:
    from bike_assets_tests.local_http import LocalHTTPServer, free_port
except ImportError:  # pytest's rootdir import mode puts this directory on sys.path instead
    from local_http import LocalHTTPServer, free_port  # type: ignore[no-redef]


@pytest.fixture
def hook() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer(status=204) as server:  # Discord answers 204 No Content
        yield server


def test_posts_discord_webhook_json(hook: LocalHTTPServer) -> None:
    alerts = DiscordResource(webhook_url=f"{hook.url}/api/webhooks/1/token", username="bot")
    assert alerts.send("Drift P3", "share 0.44 >= 0.30", level="warning") is True

    (request,) = hook.requests
    assert request.method == "POST"
    assert request.path == "/api/webhooks/1/token"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "username": "bot",
        "content": "[WARNING] Drift P3",
        "embeds": [
            {
                "title": "Drift P3",
                "description": "share 0.44 >= 0.30",
                "color": LEVEL_COLORS["warning"],
            }
        ],
        "allowed_mentions": {"parse": []},
    }


def test_long_text_is_cut_to_discord_limits(hook: LocalHTTPServer) -> None:
    alerts = DiscordResource(webhook_url=hook.url)
    assert alerts.send("t" * 300, "m" * 5000, level="nonsense") is True
    body = hook.requests[0].json()
    embed = body["embeds"][0]
    assert len(embed["title"]) == 256
    assert len(embed["description"]) == 4096
    assert len(body["content"]) <= 2000
    assert isinstance(embed["color"], int)  # unknown level: shown (grey), not refused


def test_same_dedup_key_is_sent_once(hook: LocalHTTPServer) -> None:
    alerts = DiscordResource(webhook_url=hook.url)
    assert alerts.send("a", "first", dedup_key="drift:2024-07-07") is True
    assert alerts.send("a", "second", dedup_key="drift:2024-07-07") is False
    assert alerts.send("b", "other key", dedup_key="drift:2024-07-14") is True
    assert alerts.send("c", "no key") is True
    assert alerts.send("c", "no key") is True
    assert [r.json()["embeds"][0]["description"] for r in hook.requests] == [
        "first",
        "other key",
        "no key",
        "no key",
    ]


def test_dedup_survives_a_new_resource_with_state_dir(
    hook: LocalHTTPServer, tmp_path: Path
) -> None:
    first = DiscordResource(webhook_url=hook.url, state_dir=str(tmp_path / "alerts"))
    assert first.send("x", "y", dedup_key="run-failure:abc") is True
    assert (tmp_path / "alerts" / DEDUP_FILE).exists()

    # A fresh object, as in a new Dagster run or another process, reads the same file.
    second = DiscordResource(webhook_url=hook.url, state_dir=str(tmp_path / "alerts"))
    assert second.already_sent("run-failure:abc")
    assert second.send("x", "y", dedup_key="run-failure:abc") is False
    assert len(hook.requests) == 1


def test_without_state_dir_dedup_is_per_object(hook: LocalHTTPServer) -> None:
    assert DiscordResource(webhook_url=hook.url).send("x", "y", dedup_key="k") is True
    assert DiscordResource(webhook_url=hook.url).send("x", "y", dedup_key="k") is True
    assert len(hook.requests) == 2


def test_unreachable_webhook_returns_false_and_does_not_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/webhooks/1/secret-token"
    alerts = DiscordResource(webhook_url=url, timeout_s=2.0)
    with caplog.at_level(logging.WARNING):
        assert alerts.send("t", "m", dedup_key="k") is False
    assert "unreachable" in caplog.text
    assert "secret-token" not in caplog.text  # the webhook's token is never logged
    # not delivered, so the key was released: a later call may deliver it
    assert not alerts.already_sent("k")


def test_failed_delivery_is_retried_with_the_same_key(
    hook: LocalHTTPServer, tmp_path: Path
) -> None:
    alerts = DiscordResource(webhook_url=hook.url, state_dir=str(tmp_path))
    hook.status = 500
    assert alerts.send("t", "m", dedup_key="k") is False
    hook.status = 204
    assert alerts.send("t", "m", dedup_key="k") is True
    assert alerts.send("t", "m", dedup_key="k") is False
    assert len(hook.requests) == 2


@pytest.mark.parametrize("status", [400, 404, 429, 500])
def test_http_error_returns_false(hook: LocalHTTPServer, status: int) -> None:
    hook.status = status
    assert DiscordResource(webhook_url=hook.url).send("t", "m") is False
    assert len(hook.requests) == 1


def test_slow_webhook_times_out_without_raising(hook: LocalHTTPServer) -> None:
    hook.delay_s = 2.0
    started = time.monotonic()
    assert DiscordResource(webhook_url=hook.url, timeout_s=0.3).send("t", "m") is False
    assert time.monotonic() - started < 1.5


def test_bad_url_does_not_raise() -> None:
    assert DiscordResource(webhook_url="not a url").send("t", "m") is False


def test_no_url_logs_and_sends_nothing(
    hook: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = DiscordResource(webhook_url="")
    with caplog.at_level(logging.INFO):
        assert alerts.send("Retraining decision P2", "because", dedup_key="k") is False
    assert "Retraining decision P2" in caplog.text
    assert hook.requests == []
