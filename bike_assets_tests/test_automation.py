"""Automation by data state, evaluated tick by tick as the daemon's sensor would (#14 point 4).

`dg.evaluate_automation_conditions` runs the real conditions of the code location against the
real instance; only the clock is chosen (`evaluation_time`), because "after yesterday's counts
landed" and "once the week is over" are statements about time.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from bike_assets_tests.conftest import RANGE_END, RANGE_START, Platform

PARIS = ZoneInfo("Europe/Paris")
PREDICTIONS = dg.AssetKey("predictions")
WEEKLY = (dg.AssetKey("champion_health"), dg.AssetKey("drift_report"))


class Ticks:
    """Successive evaluations sharing the cursor, like consecutive sensor ticks."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.cursor: Any = None

    def at(self, when: datetime) -> dg.EvaluateAutomationConditionsResult:
        result = dg.evaluate_automation_conditions(
            defs=self.platform.defs,
            instance=self.platform.instance,
            evaluation_time=when,
            cursor=self.cursor,
        )
        self.cursor = result.cursor
        return result


def paris(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=PARIS)


def ingest_day(platform: Platform, day: str) -> None:
    platform.ingest(date.fromisoformat(day), date.fromisoformat(day))


def materialize(platform: Platform, *keys: str) -> None:
    job = platform.defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=platform.instance, asset_selection=[dg.AssetKey(k) for k in keys]
    )


def weekly_requested(result: dg.EvaluateAutomationConditionsResult) -> list[int]:
    return [result.get_num_requested(key) for key in WEEKLY]


def test_predictions_issued_once_yesterdays_counts_land_and_monitoring_once_the_week_is_over(
    platform: Platform,
) -> None:
    platform.ingest(date(2024, 1, 8), date(2024, 2, 8))
    platform.retrain(force=True)
    ticks = Ticks(platform)
    ticks.at(paris("2024-02-09", 23))  # the first tick only records the state
    materialize(platform, "champion_level")  # the new champion's level, as the sensor would

    # Saturday 2024-02-10 has begun, but Friday's counts have not landed: no forecast on them
    early = ticks.at(paris("2024-02-10", 0, 30))
    assert early.get_requested_partitions(PREDICTIONS) == set()

    # Friday's counts land, and the champion's level is brought up to Friday
    ingest_day(platform, "2024-02-09")
    materialize(platform, "champion_level")
    landed = ticks.at(paris("2024-02-10", 2, 30))
    assert landed.get_requested_partitions(PREDICTIONS) == {"2024-02-10"}
    assert weekly_requested(landed) == [0, 0]  # not the end of a week
    # run what was requested, as the sensor would; the forecast carries the fresh level
    platform.run("daily_predictions_job", partition_key="2024-02-10")
    issued: Any = platform.defs.load_asset_value(
        "predictions", partition_key="2024-02-10", instance=platform.instance
    )
    assert set(issued["model_level_as_of"]) == {"2024-02-09"}
    assert ticks.at(paris("2024-02-10", 3)).get_requested_partitions(PREDICTIONS) == set()

    # a new champion (and its level) does not re-issue the published day
    platform.retrain(force=True)
    assert ticks.at(paris("2024-02-10", 4)).get_requested_partitions(PREDICTIONS) == set()
    materialize(platform, "champion_level")
    assert ticks.at(paris("2024-02-10", 5)).get_requested_partitions(PREDICTIONS) == set()

    ingest_day(platform, "2024-02-10")
    materialize(platform, "champion_level")
    sunday = ticks.at(paris("2024-02-11", 2, 30))
    assert sunday.get_requested_partitions(PREDICTIONS) == {"2024-02-11"}

    # Monday 01:00: the week is over on the clock, but Sunday's counts are not in yet
    monday_early = ticks.at(paris("2024-02-12", 1))
    assert weekly_requested(monday_early) == [0, 0]
    assert monday_early.get_requested_partitions(PREDICTIONS) == set()

    ingest_day(platform, "2024-02-11")
    monday = ticks.at(paris("2024-02-12", 2, 30))
    assert weekly_requested(monday) == [1, 1]

    # handled once: the next tick of the same week asks for nothing
    assert weekly_requested(ticks.at(paris("2024-02-12", 3))) == [0, 0]


def test_a_backfill_of_counts_issues_only_the_day_in_progress(platform: Platform) -> None:
    """A year of raw_counts landing must not trigger a year of forecasts by automation: past
    issue days are a deliberate backfill of `predictions` (see the demo)."""
    platform.ingest(date(2024, 1, 8), date(2024, 2, 8))
    platform.retrain(force=True)
    ticks = Ticks(platform)
    ticks.at(paris("2024-02-12", 1))
    platform.run("ingest_job", tags={RANGE_START: "2024-02-09", RANGE_END: "2024-02-11"})
    materialize(platform, "champion_level")
    result = ticks.at(paris("2024-02-12", 2, 30))
    assert result.get_requested_partitions(PREDICTIONS) == {"2024-02-12"}


def test_nothing_downstream_runs_on_a_clock(platform: Platform) -> None:
    assert [s.name for s in platform.defs.schedules or []] == ["daily_ingest_schedule"]
    sensor = platform.defs.get_sensor_def("default_automation_condition_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    graph = platform.defs.resolve_asset_graph()
    automated = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).automation_condition
    }
    assert automated >= {"predictions", "champion_health", "drift_report"}


def test_the_level_update_follows_the_latest_day_even_with_old_days_missing(
    platform: Platform,
) -> None:
    """Production always has missing days since BIKE_PARTITIONS_START: they must not hold the
    daily level update back; the latest day landing must trigger it."""
    platform.ingest(date(2024, 1, 8), date(2024, 2, 8))  # nothing before 2024-01-08
    platform.retrain()
    level = dg.AssetKey("champion_level")
    ticks = Ticks(platform)
    ticks.at(paris("2024-02-09", 23))
    ingest_day(platform, "2024-02-09")
    landed = ticks.at(paris("2024-02-10", 2, 30))
    assert landed.get_num_requested(level) == 1
    materialize(platform, "champion_level")
    quiet = ticks.at(paris("2024-02-10", 3, 30))  # nothing new: nothing requested
    assert quiet.get_num_requested(level) == 0
