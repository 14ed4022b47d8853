"""The model lifecycle through real Dagster runs: splits -> challenger -> evaluation -> champion."""

from __future__ import annotations

import json
import multiprocessing
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from bike_assets.lifecycle.audit import PROMOTION_LOG, log_promotion
from bike_assets.lifecycle.unseen import unseen_mask
from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.ml.pointer import ChampionPointer, read_pointer, write_pointer
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.warehouse import DuckDBWarehouse
from bike_assets_tests.conftest import Platform, retrain_config

# January 2024: no public or school holiday in the test windows.
FIRST, LAST = date(2024, 1, 8), date(2024, 2, 8)


def promotion_log(platform: Platform):  # type: ignore[no-untyped-def]
    return DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read(PROMOTION_LOG)


def alias_version(platform: Platform, alias: str) -> str:
    client = MlflowClient(tracking_uri=platform.settings.mlflow_tracking_uri)
    return str(client.get_model_version_by_alias("bike-counts", alias).version)


def test_first_retrain_deploys_the_served_refit_after_an_honest_evaluation(
    platform: Platform,
) -> None:
    platform.ingest(FIRST, LAST)
    platform.retrain()

    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None and pointer.kind == "model"
    assert alias_version(platform, "champion") == pointer.version
    assert alias_version(platform, "challenger") == pointer.version

    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert (report["decision"], report["serve"]) == ("DEPLOY", "challenger")
    assert report["champion"]["status"] == "none"
    for split in ("test_baseline", "test_current"):
        scores = report["splits"][split]["scores"]
        assert set(scores) == {"challenger", "naive"}
        assert scores["challenger"]["rows"] == scores["naive"]["rows"] > 0
    # the evaluated artifact never saw a test hour; the served one saw test_current too
    evaluated, served = (
        report["challenger"]["evaluated_range"],
        report["challenger"]["served_range"],
    )
    first_current = pd.Timestamp(report["splits"]["test_current"]["first_hour_utc"])
    assert first_current >= pd.Timestamp(evaluated["end"])
    last_current = pd.Timestamp(report["splits"]["test_current"]["last_hour_utc"])
    assert pd.Timestamp(served["end"]) > last_current
    assert pointer.trained_range == served and pointer.evaluated_range == evaluated
    assert pointer.level_as_of == (LAST.isoformat())
    saved = platform.settings.reports_dir / f"evaluation_v{pointer.version}.json"
    assert json.loads(saved.read_text())["decision"] == "DEPLOY"

    log = promotion_log(platform)
    assert log["decision"].tolist() == ["DEPLOY"]
    assert log["champion_version"].tolist() == [pointer.version]
    assert log["served_kind"].tolist() == ["model"]

    # the registry says what was decided, and keeps the report and the evaluated artifact
    client = MlflowClient(tracking_uri=platform.settings.mlflow_tracking_uri)
    version = client.get_model_version("bike-counts", pointer.version)
    assert version.tags["decision"] == "DEPLOY" and version.tags["served_after"] == "challenger"
    assert float(version.tags["baseline_r2_floor"]) == 0.6
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert f"evaluation/report_v{pointer.version}.json" in artifacts
    evaluated = {a.path for a in client.list_artifacts(version.run_id, "pipelines")}
    assert any(path.startswith("pipelines/evaluated") for path in evaluated)


def test_skip_rollback_force_and_rollback_again(platform: Platform) -> None:
    """One history, in order: DEPLOY v1, SKIP (same data: nothing newer to learn), rollback
    refused (nothing before v1), forced promotion of v2 over a SKIP, rollback to v1."""
    platform.ingest(FIRST, LAST)
    platform.retrain()
    v1 = read_pointer(platform.settings.champion_pointer_uri)
    assert v1 is not None

    platform.retrain()
    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert report["champion"]["status"] == "ok"
    # the champion trained on test_current (served refit): scored only on test_baseline,
    # which no model trains on, on the very same rows as the others
    assert set(report["splits"]["test_current"]["scores"]) == {"challenger", "naive"}
    base = report["splits"]["test_baseline"]["scores"]
    assert base["challenger"]["rows"] == base["champion"]["rows"] == base["naive"]["rows"] > 0
    assert report["decision"] == "SKIP" and "no newer data" in report["reason"]
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


def test_a_challenger_beaten_by_the_naive_ends_the_run_with_the_naive_served(
    platform: Platform,
) -> None:
    """The scenario of a real-data first retrain whose challenger loses to the seasonal naive:
    a decision, not a failure, and the platform serves the naive rather than nothing."""
    platform.ingest(FIRST, LAST)
    weak = {"kind": "random_forest", "n_estimators": 1, "max_depth": 1, "validation_days": 2}
    config = retrain_config()
    config["ops"]["challenger_model"]["config"] = weak
    result = platform.run("retrain_job", run_config=config)
    assert result.success

    report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
    assert (report["decision"], report["serve"]) == ("REJECT", "naive"), report["reason"]
    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None and pointer.kind == "naive"
    assert pointer.version != report["challenger"]["version"]
    assert alias_version(platform, "champion") == pointer.version
    # the naive served is a real model: it loads from the store and forecasts every counter
    model = ModelStore(root=str(platform.settings.data_dir)).load(pointer.model_uri)
    counters = known_counters(model)
    future = pd.DataFrame(
        {
            "counter_id": counters,
            "timestamp": pd.Timestamp(pointer.trained_range["end"]),
        }
    )
    assert (predict_counts(model, future) >= 0).all() and len(counters) > 0
    log = promotion_log(platform)
    assert log["decision"].tolist() == ["REJECT"]
    assert log["served_kind"].tolist() == ["naive"]
    assert log["champion_version"].tolist() == [pointer.version]

    # the next, sane challenger beats the naive champion and replaces it
    platform.retrain()
    replaced = read_pointer(platform.settings.champion_pointer_uri)
    assert replaced is not None and replaced.kind == "model"
    assert promotion_log(platform)["decision"].tolist() == ["REJECT", "DEPLOY"]


def test_no_model_is_ever_scored_on_regression_hours_it_trained_on(platform: Platform) -> None:
    """Retrains on a growing history: test_baseline stays the recorded window, and no
    challenger (evaluated artifact) or champion (served artifact) ever trained on its hours."""
    platform.ingest(FIRST, LAST)
    windows, end = set(), LAST
    for step in range(3):
        if step:
            end += timedelta(days=4)
            platform.ingest(end - timedelta(days=3), end)
        platform.retrain()
        report = platform.defs.load_asset_value("evaluation_report", instance=platform.instance)
        baseline = report["splits"]["test_baseline"]
        hours = pd.Series(
            pd.date_range(baseline["first_hour_utc"], baseline["last_hour_utc"], freq="h")
        )
        windows.add((baseline["first_hour_utc"], baseline["last_hour_utc"]))
        assert not unseen_mask(hours, {"start": "", "end": ""}).any()  # unknown: not unseen
        assert unseen_mask(hours, report["challenger"]["evaluated_range"]).all()
        assert unseen_mask(hours, report["challenger"]["served_range"]).all()
        if "champion" in baseline["scores"]:
            champion = read_pointer(platform.settings.champion_pointer_uri)
            assert champion is not None
            assert unseen_mask(
                hours,
                champion.previous["trained_range"]
                if champion.version == report["challenger"]["version"]
                else champion.trained_range,
            ).all()
    assert len(windows) == 1  # the regression window never moved with the data
    recorded = DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read(
        "regression_window"
    )
    assert len(recorded) == 1 and recorded["reason"].iloc[0] == "chosen by the first retrain"


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
