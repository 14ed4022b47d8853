"""Issue #13: the MLflow server going away fails the training run clearly, champion untouched.

A first champion is trained with the platform's local MLflow store; then the tracking URI points
at a server that is gone (a 127.0.0.1 port nothing listens on: what the client sees once the
server process has died) and a forced retrain runs. It must fail, name the tracking server, end
within a bounded time (MLflow's own HTTP retries bounded by its environment variables), and leave
the champion pointer exactly as it was.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from bike_assets.ml.pointer import read_pointer
from bike_assets_tests.conftest import Platform
from bike_assets_tests.ingestion_fixtures import failure_message
from bike_assets_tests.local_http import free_port

FIRST, LAST = date(2024, 1, 8), date(2024, 2, 8)  # as test_lifecycle: no holiday in the windows


@pytest.mark.e2e
def test_mlflow_gone_fails_the_retrain_clearly_and_keeps_the_champion(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bike_assets.definitions import build_definitions
    from bike_assets.settings import Settings

    platform.ingest(FIRST, LAST)
    assert platform.retrain().success
    pointer_file = Path(platform.settings.champion_pointer_uri)
    before = pointer_file.read_bytes()
    champion = read_pointer(platform.settings.champion_pointer_uri)
    assert champion is not None

    gone = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
    # MLflow retries a refused connection 7 times with exponential backoff by default (minutes);
    # a deployment bounds it with these variables, and so does the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = Settings.from_env()
    assert settings.mlflow_tracking_uri == gone
    without_mlflow = Platform(settings, build_definitions(settings), platform.instance)

    started = time.monotonic()
    result = without_mlflow.retrain(force=True, raise_on_error=False)
    elapsed = time.monotonic() - started

    assert not result.success
    message = failure_message(result)
    assert f"127.0.0.1:{gone.rsplit(':', 1)[1]}" in message  # names the server it could not reach
    assert elapsed < 180
    assert pointer_file.read_bytes() == before  # not rewritten, not even with the same content
    after = read_pointer(platform.settings.champion_pointer_uri)
    assert after is not None and after.version == champion.version
