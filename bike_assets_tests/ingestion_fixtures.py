"""Helpers shared by the ingestion tests: the platform pointed at a Paris API stand-in, and
what the warehouse holds (read back through Dagster, or straight from the DuckDB file)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import duckdb
import pandas as pd
import pytest

from bike_assets.schema import coerce_tidy
from bike_assets_tests.conftest import Platform


def paris_platform(
    monkeypatch: pytest.MonkeyPatch, url: str, instance: dg.DagsterInstance, **env: str
) -> Platform:
    """The whole platform (definitions rebuilt from the environment) reading `url`.

    Call it after the `platform_env` fixture, so the data directory is the test's own.
    """
    from bike_assets.definitions import build_definitions
    from bike_assets.settings import Settings

    monkeypatch.setenv("BIKE_SOURCE", "paris")
    monkeypatch.setenv("PARIS_OPEN_DATA_URL", url)
    for name, value in {"PARIS_MAX_RETRIES": "2", "PARIS_HTTP_TIMEOUT": "2", **env}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    return Platform(settings=settings, defs=build_definitions(settings), instance=instance)


def stored(platform: Platform, day: date) -> pd.DataFrame:
    """One day of raw_counts as the platform's consumers load it."""
    return platform.defs.load_asset_value(
        "raw_counts", partition_key=day.isoformat(), instance=platform.instance
    )


def warehouse_rows(platform: Platform) -> pd.DataFrame:
    """Every row of raw_counts in the DuckDB file, bypassing Dagster (duplicates included)."""
    with duckdb.connect(str(platform.settings.warehouse_path), read_only=True) as conn:
        return coerce_tidy(conn.execute("SELECT * FROM bike.raw_counts").df())


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The error text of the run's first failed step."""
    failure = next(e for e in result.all_events if e.is_step_failure)
    return str(failure.event_specific_data.error)  # type: ignore[union-attr]
