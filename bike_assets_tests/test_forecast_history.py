"""The forecast history (#8 point 2): `predictions` partitioned by issue day, kept with the
model that issued it, and `champion_health` scoring the forecasts that were published."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from bike_assets.ml.metrics import score
from bike_assets.ml.naive import fit_naive
from bike_assets.ml.paris_days import last_whole_day, paris_day_start
from bike_assets.ml.pointer import read_pointer
from bike_assets.monitoring.forecast_history import (
    FORECAST_COLUMNS,
    ForecastModel,
    issue_forecast,
    normalize_forecasts,
    published_forecasts,
)
from bike_assets.resources.warehouse import DuckDBWarehouse
from bike_assets_tests.conftest import RANGE_END, RANGE_START, Platform

# --- which published forecast scores an hour (pure) -------------------------------------------

SEEN_UNTIL = paris_day_start("2024-03-01")  # the model saw every hour before


def forecast_row(issued: str, hour: str, version: str, predicted: float) -> dict[str, Any]:
    issued_at = paris_day_start(issued)
    timestamp = pd.Timestamp(hour, tz="Europe/Paris").tz_convert("UTC")
    return {
        "issued_at": issued_at,
        "counter_id": "c1",
        "timestamp": timestamp,
        "predicted_count": predicted,
        "lead_hours": int((timestamp - issued_at) / pd.Timedelta(hours=1)),
        "data_until": issued_at,
        "model_version": version,
        "model_kind": "model",
        "model_uri": f"models/v{version}/model.joblib",
        "model_level_as_of": "",
        "model_seen_until": SEEN_UNTIL,
        "created_at": issued_at,
    }


HISTORY = normalize_forecasts(
    pd.DataFrame(
        [
            # an hour the model had seen is never scored
            forecast_row("2024-02-29", "2024-02-29 22:00", "1", 0.0),
            forecast_row("2024-03-01", "2024-03-05 08:00", "1", 10.0),
            forecast_row("2024-03-04", "2024-03-05 08:00", "1", 20.0),
            forecast_row("2024-03-05", "2024-03-05 08:00", "1", 30.0),  # the most recent: used
            forecast_row("2024-03-05", "2024-03-05 08:00", "2", 40.0),  # another version
            forecast_row("2024-03-02", "2024-03-06 08:00", "1", 50.0),  # only issue: lead 4 days
            forecast_row("2024-03-02", "2024-03-20 08:00", "1", 60.0),  # outside the window
        ]
    )
)
WINDOW = (paris_day_start("2024-02-29"), paris_day_start("2024-03-07"))


def test_each_hour_is_scored_on_the_latest_forecast_published_for_it() -> None:
    chosen = published_forecasts(HISTORY, "1", *WINDOW)
    assert chosen["predicted_count"].tolist() == [30.0, 50.0]
    assert chosen["lead_hours"].tolist() == [8, 4 * 24 + 8]


def test_only_the_given_champion_version_is_scored() -> None:
    assert published_forecasts(HISTORY, "2", *WINDOW)["predicted_count"].tolist() == [40.0]
    assert published_forecasts(HISTORY, "3", *WINDOW).empty


def test_a_forecast_stored_after_its_hour_is_not_a_forecast() -> None:
    late = forecast_row("2024-03-06", "2024-03-05 08:00", "1", 99.0)  # a hand-written row
    history = normalize_forecasts(pd.concat([HISTORY, pd.DataFrame([late])]))
    assert published_forecasts(history, "1", *WINDOW)["predicted_count"].tolist() == [30.0, 50.0]


def test_no_history_scores_nothing() -> None:
    assert published_forecasts(pd.DataFrame(), "1", *WINDOW).empty


# --- what an issue day reads and forecasts (pure, a seasonal-naive champion) --------------------


def hourly(counter: str, first: str, last: str, count: int) -> pd.DataFrame:
    """Hourly counts of one counter over the Paris days first..last."""
    hours = pd.date_range(
        paris_day_start(first), paris_day_start(last, 1), freq="h", inclusive="left"
    )
    return pd.DataFrame({"counter_id": counter, "timestamp": hours, "count": count})


def test_an_issue_day_reads_only_the_week_before_it_and_forecasts_seven_paris_days() -> None:
    day = "2024-03-28"  # the forecast spans the change to summer time (2024-03-31: 23 hours)
    before = pd.concat(
        [
            hourly("a", "2024-03-01", "2024-03-27", 10),
            hourly("b", "2024-03-01", "2024-03-15", 10),  # silent for the 12 days before D
        ]
    )
    after = pd.concat(
        [
            hourly("a", day, "2024-04-05", 500),  # a jump from D on: must change nothing
            hourly("c", day, "2024-04-05", 500),  # first reports on D: not forecast on D
        ]
    )
    pipeline = fit_naive(pd.concat([before, after]))  # a model that knows a, b and c
    model = ForecastModel(version="7", uri="models/v7", kind="naive")
    stamp = datetime(2024, 4, 10, tzinfo=UTC)

    issued = issue_forecast(pipeline, model, day, pd.concat([before, after]), created_at=stamp)
    blind = issue_forecast(pipeline, model, day, before, created_at=stamp)
    pd.testing.assert_frame_equal(issued, blind)  # counts from D on are never read

    assert set(issued["counter_id"]) == {"a"}
    assert issued["timestamp"].min() == paris_day_start(day)
    assert issued["timestamp"].max() == paris_day_start(day, 7) - pd.Timedelta(hours=1)
    assert len(issued) == 7 * 24 - 1  # seven Paris days, one of them 23 hours long
    assert issued["lead_hours"].tolist() == list(range(167))
    assert (issued["data_until"] == paris_day_start(day)).all()
    assert set(issued["model_kind"]) == {"naive"} and set(issued["model_version"]) == {"7"}


def test_a_day_with_no_counts_in_the_week_before_issues_nothing() -> None:
    counts = hourly("a", "2024-03-01", "2024-03-10", 10)
    model = ForecastModel(version="7", uri="models/v7")
    assert issue_forecast(fit_naive(counts), model, "2024-03-28", counts).empty


# --- the asset, through real runs ---------------------------------------------------------------


def issue(platform: Platform, first: str, last: str) -> Any:
    return platform.run("daily_predictions_job", tags={RANGE_START: first, RANGE_END: last})


def stored(platform: Platform, day: str) -> pd.DataFrame:
    frame: Any = platform.defs.load_asset_value(
        "predictions", partition_key=day, instance=platform.instance
    )
    return normalize_forecasts(frame)


def materialize_health(platform: Platform) -> dict[str, Any]:
    job = platform.defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=platform.instance, asset_selection=[dg.AssetKey("champion_health")]
    )
    health: Any = platform.defs.load_asset_value("champion_health", instance=platform.instance)
    return health


@pytest.fixture
def champion_on_january(platform: Platform) -> Platform:
    platform.ingest(date(2024, 1, 8), date(2024, 2, 8))
    platform.retrain(force=True)
    return platform


def test_backfilled_issue_days_form_a_history_without_look_ahead(
    champion_on_january: Platform,
) -> None:
    platform = champion_on_january
    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None
    platform.ingest(date(2024, 2, 9), date(2024, 2, 9))
    issue(platform, "2024-02-10", "2024-02-10")
    first = stored(platform, "2024-02-10")

    # the counts of the issue day and after arrive; the backfill re-issues 02-10 with them stored
    platform.ingest(date(2024, 2, 10), date(2024, 2, 12))
    issue(platform, "2024-02-10", "2024-02-13")
    again = stored(platform, "2024-02-10")
    same = ["issued_at", "counter_id", "timestamp", "predicted_count", "data_until"]
    pd.testing.assert_frame_equal(first[same], again[same])  # counts from D on change nothing

    history = DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read("predictions")
    history = normalize_forecasts(history)
    assert list(history.columns) == FORECAST_COLUMNS
    assert not history.duplicated(["issued_at", "counter_id", "timestamp"]).any()  # replaced
    days = ["2024-02-10", "2024-02-11", "2024-02-12", "2024-02-13"]
    assert sorted(history["issued_at"].unique()) == [paris_day_start(d) for d in days]
    assert set(history["model_version"]) == {pointer.version}
    assert set(history["model_uri"]) == {pointer.model_uri}
    assert (history["data_until"] <= history["issued_at"]).all()  # no look-ahead, ever
    assert (history["predicted_count"] >= 0).all()
    for day in history["issued_at"].unique():
        rows = history[history["issued_at"] == day]
        # Paris days D..D+6 (no DST change in February: 168 hours) for every counter
        per_counter = rows.groupby("counter_id")["timestamp"].agg(["min", "max", "size"])
        assert (per_counter["min"] == day).all()
        assert (per_counter["max"] == day + pd.Timedelta(hours=167)).all()
        assert (per_counter["size"] == 168).all()
        assert (rows["data_until"] == day).all()  # yesterday's counts were in


def test_champion_health_scores_the_published_forecasts(champion_on_january: Platform) -> None:
    platform = champion_on_january
    platform.ingest(date(2024, 2, 9), date(2024, 2, 15))
    waiting = materialize_health(platform)
    assert waiting["state"] == "insufficient_data"
    assert "materialize the `predictions` issue days" in waiting["reason"]

    every_3 = {"ops": {"predictions": {"config": {"progress_every_days": 3}}}}
    backfill = platform.run(
        "daily_predictions_job",
        tags={RANGE_START: "2024-02-09", RANGE_END: "2024-02-15"},
        run_config=every_3,
    )
    # a backfill of issue days says how far it is (what the demo's progress line shows)
    progress = [
        entry.user_message.split(" days")[0]
        for entry in platform.instance.all_logs(backfill.run_id)
        if entry.user_message.startswith("predictions progress:")
    ]
    assert progress == [f"predictions progress: {n}/7" for n in (3, 6, 7)]
    health = materialize_health(platform)
    assert health["state"] == "ok", health

    # the same figures from the stored partitions: each hour's own issue day, and its count
    published = pd.concat(
        [stored(platform, f"2024-02-{day:02d}") for day in range(9, 16)], ignore_index=True
    )
    same_day = published[published["lead_hours"] < 24]  # daily issues: the latest is the day's
    counts = DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read_counts(
        paris_day_start("2024-02-09"), paris_day_start("2024-02-16")
    )
    counts = counts.assign(counter_id=counts["counter_id"].astype(str))
    joined = same_day.merge(counts, on=["counter_id", "timestamp"])
    expected = score(joined["count"], joined["predicted_count"])
    assert health["rows"] == len(joined) >= 0.9 * 5 * 7 * 24
    assert health["issues_scored"] == 7
    assert 0 <= health["mean_lead_hours"] < 24
    np.testing.assert_allclose(
        [health["r2"], health["rmse"], health["mae"]],
        [expected["r2"], expected["rmse"], expected["mae"]],
    )
    event = platform.instance.get_latest_materialization_event(dg.AssetKey("champion_health"))
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert {"state", "r2", "rmse", "mae", "rows", "champion_version", "reason"} <= set(metadata)


def test_history_read_back_from_bigquery_naming_is_the_same_history() -> None:
    # dagster-gcp stores column names upper-case; champion_health reads them back as they are
    shouted = HISTORY.rename(columns=str.upper).astype({"ISSUED_AT": str, "LEAD_HOURS": float})
    pd.testing.assert_frame_equal(normalize_forecasts(shouted), HISTORY)


@pytest.mark.parametrize(
    ("last_hour", "expected"),
    [
        ("2024-03-01T23:00:00+01:00", "2024-03-01"),  # the day's last hour: whole
        ("2024-03-01T15:00:00+01:00", "2024-02-29"),  # half a day: the day before
        ("2024-03-31T23:00:00+02:00", "2024-03-31"),  # a 23-hour day (clocks go forward)
        ("2024-10-27T23:00:00+01:00", "2024-10-27"),  # a 25-hour day (clocks go back)
    ],
)
def test_last_whole_paris_day(last_hour: str, expected: str) -> None:
    assert last_whole_day(pd.Timestamp(last_hour).tz_convert("UTC")).isoformat() == expected
    start = paris_day_start(expected)
    assert start.tz_convert("Europe/Paris").hour == 0


def test_the_warehouse_reads_the_forecasts_of_a_window_only(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    start, end = paris_day_start("2024-03-02"), paris_day_start("2024-03-03")
    assert warehouse.read_between("predictions", start, end).empty  # no table yet
    hours = pd.date_range(paris_day_start("2024-03-01"), paris_day_start("2024-03-04"), freq="h")
    warehouse.append("predictions", pd.DataFrame({"timestamp": hours, "predicted_count": 1.0}))
    window = warehouse.read_between("predictions", start, end)
    assert len(window) == 24
    assert window["timestamp"].min() == start and window["timestamp"].max() < end
