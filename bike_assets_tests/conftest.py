"""Shared fixtures: a whole local platform in a temporary BIKE_DATA_DIR (real DuckDB, real
sqlite MLflow store, Dagster in-process on an ephemeral instance)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bike_assets.settings import Settings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

# Small windows so that a retrain takes seconds: needs 28 days of data.
SMALL_SPLITS = {
    "test_current_days": 5,
    "train_current_days": 10,
    "test_baseline_days": 5,
    "min_train_baseline_days": 8,
}
SMALL_MODEL = {"max_iter": 40, "validation_days": 2}


def retrain_config(force: bool = False) -> dict[str, Any]:
    return {
        "ops": {
            "splits": {"config": SMALL_SPLITS},
            "challenger_model": {"config": SMALL_MODEL},
            "champion": {"config": {"force": force}},
        }
    }


@dataclass
class Platform:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance

    def run(self, job: str, *, raise_on_error: bool = True, **kwargs: Any) -> Any:
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, raise_on_error=raise_on_error, **kwargs
        )

    def ingest(self, first: date, last: date, **kwargs: Any) -> Any:
        return self.run(
            "ingest_job",
            tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
            **kwargs,
        )

    def retrain(self, force: bool = False, **kwargs: Any) -> Any:
        return self.run("retrain_job", run_config=retrain_config(force), **kwargs)


# Variables a developer may have exported; tests must not inherit them.
_PLATFORM_ENV = (
    "BIKE_ENV",
    "BIKE_SOURCE",
    "BIKE_API_KEY",
    "BIKE_SYNTHETIC_DRIFT_DATE",
    "PARIS_OPEN_DATA_URL",
    "MLFLOW_TRACKING_URI",
    "DISCORD_WEBHOOK_URL",
    "PROMETHEUS_PUSHGATEWAY_URL",
)


@pytest.fixture
def platform_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in _PLATFORM_ENV:
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("BIKE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("BIKE_SYNTHETIC_COUNTERS", "5")
    monkeypatch.setenv("BIKE_SYNTHETIC_SEED", "7")
    return data_dir


@pytest.fixture
def paris(platform_env: Path, api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The platform reading the Paris API stand-in `api`, a FakeParisApi fixture of the module."""
    from bike_assets_tests.ingestion_fixtures import paris_platform

    with dg.instance_for_test() as instance:
        yield paris_platform(monkeypatch, api.url, instance)


@pytest.fixture
def platform(platform_env: Path) -> Iterator[Platform]:
    from bike_assets.definitions import build_definitions

    settings = Settings.from_env()
    with dg.instance_for_test() as instance:
        yield Platform(settings=settings, defs=build_definitions(settings), instance=instance)


def env_without_platform_vars() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _PLATFORM_ENV}


def dagster_home_without_daemon(home: Path) -> Path:
    """A new DAGSTER_HOME whose runs are launched directly, for a webserver with no daemon to
    dequeue them (the default coordinator would queue them forever)."""
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n"
        "  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    return home
