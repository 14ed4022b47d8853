"""The model lifecycle through real Dagster runs: splits -> challenger -> evaluation -> champion."""

from __future__ import annotations

import json
import multiprocessing
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from bike_assets.assets.champion import PROMOTION_LOG, log_promotion
from bike_assets.ml.pointer import ChampionPointer, read_pointer, write_pointer
from bike_assets.resources.warehouse import DuckDBWarehouse
from bike_assets_tests.conftest import Platform

# January 2024: no public or school holiday in the test windows.
FIRST, LAST = date(2024, 1, 8), date(2024, 2, 8)


def promotion_log(platform: Platform):  # type: ignore[no-untyped-def]
    return DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read(PROMOTION_LOG)


def alias_version(platform: Platform, alias: str) -> str:
    client = MlflowClient(tracking_uri=platform.settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias("bike-counts", alias).version)


def test_first_retrain_deploys_with_double_evaluation_and_aliases(platform: Platform) -> None:
    platform.ingest(FIRST, LAST)
    platform.retrain()

    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None
    assert Path(pointer.model_uri).exists()
    assert alias_version(platform, "champion") == pointer.version
    assert alias_version(platform, "challenger") == pointer.version

    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert report["decision"] == "DEPLOY"
    assert report["champion"]["status"] == "none"
    for split in ("test_baseline", "test_current"):
        scores = report["splits"][split]["scores"]
        assert set(scores) == {"challenger", "naive"}
        assert scores["challenger"]["rows"] == scores["naive"]["rows"] > 0
    # every score is on hours after the training range
    trained_end = pd.Timestamp(report["challenger"]["trained_range"]["end"])
    assert pd.Timestamp(report["splits"]["test_current"]["first_hour_utc"]) > trained_end
    saved = platform.settings.reports_dir / f"evaluation_v{pointer.version}.json"
    assert json.loads(saved.read_text())["decision"] == "DEPLOY"

    log = promotion_log(platform)
    assert log["decision"].tolist() == ["DEPLOY"]
    assert log["champion_version"].tolist() == [pointer.version]


def test_skip_rollback_force_and_rollback_again(platform: Platform) -> None:
    """One history, in order: DEPLOY v1, SKIP (same data), rollback refused (nothing before v1),
    forced promotion of v3 over a SKIP, rollback to v1."""
    platform.ingest(FIRST, LAST)
    platform.retrain()
    v1 = read_pointer(platform.settings.champion_pointer_uri)
    assert v1 is not None

    platform.retrain()
    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert report["champion"]["status"] == "ok"
    for split in ("test_baseline", "test_current"):  # the very same rows for the three models
        scores = report["splits"][split]["scores"]
        assert scores["challenger"]["rows"] == scores["champion"]["rows"] == scores["naive"]["rows"]
    assert report["decision"] == "SKIP"
    assert read_pointer(platform.settings.champion_pointer_uri) == v1

    refused = platform.run("rollback_champion_job", raise_on_error=False)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.is_step_failure)
    assert "no previous champion" in str(failure.event_specific_data.error)

    platform.retrain(force=True)
    forced = read_pointer(platform.settings.champion_pointer_uri)
    assert forced is not None and forced.version not in (
        v1.version,
        report["challenger"]["version"],
    )
    assert forced.previous is not None and forced.previous["version"] == v1.version
    assert alias_version(platform, "champion") == forced.version
    log = promotion_log(platform)
    assert bool(log["forced"].iloc[-1]) and "forced promotion over SKIP" in log["reason"].iloc[-1]

    platform.run("rollback_champion_job")
    back = read_pointer(platform.settings.champion_pointer_uri)
    assert back is not None and back.version == v1.version and back.model_uri == v1.model_uri
    assert back.previous is not None and back.previous["version"] == forced.version
    assert alias_version(platform, "champion") == v1.version
    assert promotion_log(platform)["decision"].tolist() == ["DEPLOY", "SKIP", "DEPLOY", "ROLLBACK"]


def test_broken_champion_is_reported_and_challenger_judged_against_naive(
    platform: Platform,
) -> None:
    platform.ingest(FIRST, LAST)
    Path(platform.settings.champion_pointer_uri).parent.mkdir(parents=True, exist_ok=True)
    write_pointer(
        platform.settings.champion_pointer_uri,
        ChampionPointer(
            version="99",
            model_uri=str(platform.settings.data_dir / "gone.joblib"),
            trained_range={},
            metrics={},
        ),
    )
    platform.retrain()
    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert report["champion"]["status"] == "unloadable"
    assert "gone.joblib" in report["champion"]["reason"]
    assert set(report["splits"]["test_current"]["scores"]) == {"challenger", "naive"}
    assert report["decision"] == "DEPLOY"
    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None and pointer.previous is not None
    assert pointer.previous["version"] == "99"


def test_too_little_data_fails_with_what_is_needed(platform: Platform) -> None:
    platform.ingest(FIRST, date(2024, 1, 13))
    result = platform.retrain(raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data.error)
    assert "need at least 22 days" in message and "found 6" in message


def _promote(pointer_uri: str, database: str, version: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    write_pointer(
        pointer_uri,
        ChampionPointer(
            version=version, model_uri=f"/models/v{version}", trained_range={}, metrics={}
        ),
    )
    log_promotion(
        DuckDBWarehouse(database=database),
        run_id=f"run-{version}",
        decision="DEPLOY",
        reason="race",
        forced=False,
        challenger_version=version,
        previous_version=None,
        champion_version=version,
    )


def test_two_racing_promotions_leave_one_valid_pointer_and_two_log_rows(tmp_path: Path) -> None:
    pointer_uri, database = str(tmp_path / "champion.json"), str(tmp_path / "w.duckdb")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_promote, args=(pointer_uri, database, v, barrier)) for v in ("1", "2")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    pointer = read_pointer(pointer_uri)
    assert pointer is not None and pointer.version in {"1", "2"}
    assert not list(tmp_path.glob(".champion.json.*.tmp"))
    log = DuckDBWarehouse(database=database).read(PROMOTION_LOG)
    assert sorted(log["champion_version"]) == ["1", "2"]


@pytest.mark.parametrize("content", ["{not json", '{"model_uri": "x"}', "[]"])
def test_corrupt_pointer_is_an_error_not_a_guess(tmp_path: Path, content: str) -> None:
    from bike_assets.ml.pointer import PointerError

    path = tmp_path / "champion.json"
    path.write_text(content)
    with pytest.raises(PointerError):
        read_pointer(str(path))
