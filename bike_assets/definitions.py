"""The `bike_assets` code location: assembled here, defined in the domain modules."""

from typing import Any

import dagster as dg

from bike_assets.assets import (
    champion,
    champion_level,
    datasets,
    evaluation,
    ingestion,
    monitoring,
    training,
)
from bike_assets.catalog import with_catalog
from bike_assets.jobs import (
    counters_job,
    daily_predictions_job,
    evaluate_champion_job,
    ingest_job,
    retrain_job,
    rollback_champion_job,
    weekly_monitor_job,
)
from bike_assets.partitions import calendar, with_calendar
from bike_assets.resources.factory import build_resources, with_storage
from bike_assets.schedules import daily_ingest_schedule, default_automation_condition_sensor
from bike_assets.sensors import build_sensors
from bike_assets.settings import Settings

ASSETS = [
    ingestion.raw_counts,
    ingestion.counters,
    datasets.splits,
    training.challenger_model,
    evaluation.evaluation_report,
    champion.champion,
    champion_level.champion_level,
    monitoring.champion_health,
    monitoring.drift_report,
    monitoring.predictions,
]
JOBS: list[Any] = [  # asset jobs and op jobs
    ingest_job,
    counters_job,
    retrain_job,
    evaluate_champion_job,
    rollback_champion_job,
    daily_predictions_job,
    weekly_monitor_job,
]


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything in the code location, with resources chosen from `settings`, the calendar of
    its partitions from `settings.partitions_start`, and the catalog (owners, column schemas,
    freshness, code references) applied to every asset."""
    cal = calendar(settings.partitions_start)
    assets = with_calendar(with_storage(ASSETS, settings), cal)
    return dg.Definitions(
        assets=with_catalog(assets, settings),
        asset_checks=[ingestion.raw_counts_checks(cal.counts), evaluation.challenger_is_sane],
        jobs=JOBS,
        schedules=[daily_ingest_schedule],
        sensors=[*build_sensors(settings), default_automation_condition_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions(Settings.from_env())
