"""Monitoring through real runs: health of the published forecasts, drift, retrain_sensor.

The forecast history itself is tested in test_forecast_history.py, what triggers the
monitoring assets in test_automation.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from bike_assets.ml.pointer import read_pointer
from bike_assets.resources.warehouse import DuckDBWarehouse
from bike_assets_tests.conftest import RANGE_END, RANGE_START, SMALL_SPLITS, Platform

TRAIN_FIRST, TRAIN_LAST = date(2024, 1, 8), date(2024, 2, 8)
WEEK_FIRST, WEEK_LAST = date(2024, 2, 9), date(2024, 2, 15)


def monitored_platform(monkeypatch: pytest.MonkeyPatch, drift: bool) -> Iterator[Platform]:
    from bike_assets.definitions import build_definitions
    from bike_assets.settings import Settings

    if drift:
        monkeypatch.setenv("BIKE_SYNTHETIC_DRIFT_DATE", WEEK_FIRST.isoformat())
    # 30 counters: with fewer, a steady week's per-counter levels are noisy enough to read as drift
    monkeypatch.setenv("BIKE_SYNTHETIC_COUNTERS", "30")
    settings = Settings.from_env()
    with dg.instance_for_test() as instance:
        platform = Platform(settings, build_definitions(settings), instance)
        platform.ingest(TRAIN_FIRST, TRAIN_LAST)
        platform.retrain()
        platform.ingest(WEEK_FIRST, WEEK_LAST)
        # the week's issue days, backfilled: champion_health scores what was published
        platform.run(
            "daily_predictions_job",
            tags={RANGE_START: WEEK_FIRST.isoformat(), RANGE_END: WEEK_LAST.isoformat()},
        )
        platform.run("weekly_monitor_job")
        yield platform


@pytest.fixture
def drifted(platform_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    yield from monitored_platform(monkeypatch, drift=True)


@pytest.fixture
def steady(platform_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    yield from monitored_platform(monkeypatch, drift=False)


def evaluate_sensor(platform: Platform, cursor: str | None = None) -> tuple[object, str | None]:
    sensor = platform.defs.get_sensor_def("retrain_sensor")
    # Resources come from the code location (as the daemon gives them), not from the environment;
    # `definitions=` alone does not reach a sensor that is called directly.
    with dg.build_sensor_context(
        instance=platform.instance, cursor=cursor, resources=platform.defs.resources
    ) as context:
        result = sensor(context)
        return result, context.cursor


def test_drifted_week_triggers_one_retrain(drifted: Platform) -> None:
    health = drifted.defs.load_asset_value("champion_health", instance=drifted.instance)
    drift = drifted.defs.load_asset_value("drift_report", instance=drifted.instance)
    # the week after the training range, minus the synthetic city's occasional gaps
    assert health["state"] == "ok" and 0.9 * 30 * 7 * 24 <= health["rows"] <= 30 * 7 * 24
    assert drift["state"] == "computed" and drift["share"] >= 0.5
    assert Path(drift["html_path"]).exists()

    result, cursor = evaluate_sensor(drifted)
    assert isinstance(result, dg.RunRequest)
    assert result.tags["bike/retrain_level"] in {"P1", "P2"}
    again, _ = evaluate_sensor(drifted, cursor=cursor)
    assert isinstance(again, dg.SkipReason)  # the same reports never trigger twice

    log = DuckDBWarehouse(database=str(drifted.settings.warehouse_path)).read("decision_log")
    assert set(log["kind"]) >= {"drift", "retrain"}

    # the requested run retrains on the drifted weeks; whatever it decides is recorded, and a
    # challenger that loses to naive is stopped by the blocking check before `champion`
    before = read_pointer(drifted.settings.champion_pointer_uri)
    result = drifted.run(
        "retrain_job",
        tags=dict(result.tags),
        raise_on_error=False,
        run_config={
            "ops": {
                "splits": {"config": SMALL_SPLITS},
                "challenger_model": {"config": {"max_iter": 40}},
            }
        },
    )
    report = drifted.defs.load_asset_value("evaluation_report", instance=drifted.instance)
    assert report["champion"]["status"] == "ok"
    assert report["run_id"] == result.run_id
    after = read_pointer(drifted.settings.champion_pointer_uri)
    if report["decision"] == "DEPLOY":
        assert result.success and after is not None and after.version != before.version
    else:
        assert after == before
    log = DuckDBWarehouse(database=str(drifted.settings.warehouse_path)).read("decision_log")
    evaluations = log[log["kind"] == "evaluation"]["decision"].tolist()
    assert evaluations[-1] == report["decision"]


def test_steady_week_with_healthy_champion_skips(steady: Platform) -> None:
    drift = steady.defs.load_asset_value("drift_report", instance=steady.instance)
    assert drift["state"] == "computed" and drift["share"] < 0.3
    result, _ = evaluate_sensor(steady)
    assert isinstance(result, dg.SkipReason)
    assert "P4" in (result.skip_message or "")


def test_sensor_without_reports_explains_why_it_waits(platform: Platform) -> None:
    result, _ = evaluate_sensor(platform)
    assert isinstance(result, dg.SkipReason)
    assert "no drift_report" in (result.skip_message or "")


PARIS = ZoneInfo("Europe/Paris")


def test_daily_ingest_schedule_asks_for_yesterday_at_two(platform: Platform) -> None:
    schedule = platform.defs.get_schedule_def("daily_ingest_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Paris"
    tick = datetime(2024, 3, 31, 2, 0, tzinfo=PARIS)
    with dg.build_schedule_context(
        instance=platform.instance, scheduled_execution_time=tick
    ) as ctx:
        requests = list(schedule.evaluate_tick(ctx).run_requests or [])
    assert [r.partition_key for r in requests] == ["2024-03-30"]
