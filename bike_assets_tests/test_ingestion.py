"""raw_counts through real runs: the Paris client against a real local HTTP server, DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bike_assets.assets.ingestion import (
    check_completeness,
    check_counts,
    check_schema,
    check_unique_keys,
)
from bike_assets.schema import TIDY_COLUMNS, coerce_tidy, schema_problems
from bike_assets.sources.fake_paris_api import CannedResponse, FakeParisApi, make_records
from bike_assets_tests.conftest import Platform, env_without_platform_vars
from bike_assets_tests.ingestion_fixtures import failure_message, paris_platform, stored

DAYS = [date(2021, 3, 27) + timedelta(days=i) for i in range(4)]  # spans the spring DST day


@pytest.fixture
def api() -> Iterator[FakeParisApi]:
    with FakeParisApi(make_records(DAYS, counters=3, seed=1)) as server:
        yield server


def test_a_range_is_one_run_and_stores_exactly_what_the_api_holds(
    paris: Platform, api: FakeParisApi
) -> None:
    result = paris.ingest(DAYS[0], DAYS[-1])
    assert result.success
    assert api.requests == len(DAYS)  # one exports call per Paris day, never the capped endpoint
    assert all("/exports/json" in r.path for r in api.log)
    frames = [stored(paris, d) for d in DAYS]
    assert [len(f) // 3 for f in frames] == [24, 23, 24, 24]  # 2021-03-28 has 23 hours
    for frame in frames:
        assert schema_problems(frame) == []
        assert list(frame.columns) == TIDY_COLUMNS
    total = pd.concat(frames)
    assert len(total) == len(make_records(DAYS, counters=3, seed=1))
    assert not total.duplicated(["counter_id", "timestamp"]).any()

    materialization = paris.instance.get_latest_materialization_event(dg.AssetKey("raw_counts"))
    assert materialization is not None
    # each partition of the one-run backfill carries its own day's figures
    assert materialization.asset_materialization.partition == DAYS[-1].isoformat()
    metadata = materialization.asset_materialization.metadata
    assert metadata["dagster/row_count"].value == len(frames[-1]) == 3 * 24
    assert metadata["counters_seen"].value == 3
    assert metadata["run_api_requests"].value == len(DAYS)


def test_rerun_is_idempotent(paris: Platform) -> None:
    paris.ingest(DAYS[0], DAYS[-1])
    before = [stored(paris, d) for d in DAYS]
    paris.ingest(DAYS[1], DAYS[2])
    after = [stored(paris, d) for d in DAYS]
    for a, b in zip(before, after, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_failed_fetch_fails_the_run_and_keeps_the_previous_rows(
    paris: Platform, api: FakeParisApi
) -> None:
    paris.ingest(DAYS[1], DAYS[1])
    before = stored(paris, DAYS[1])
    api.enqueue(CannedResponse.api_error(400, "InvalidRESTParameterError", "bad where clause"))
    result = paris.ingest(DAYS[1], DAYS[1], raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "bad where clause" in message and "2021-03-28" in message
    pd.testing.assert_frame_equal(stored(paris, DAYS[1]), before)

    api.enqueue(*[CannedResponse.unavailable(503)] * 3)  # more than PARIS_MAX_RETRIES=2
    result = paris.ingest(DAYS[1], DAYS[1], raise_on_error=False)
    assert not result.success
    pd.testing.assert_frame_equal(stored(paris, DAYS[1]), before)


def test_bad_records_are_dropped_counted_and_reported(
    platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bike_assets.definitions import build_definitions
    from bike_assets.settings import Settings

    records = make_records(DAYS[:1], counters=2, seed=3)
    records.loc[0, "sum_counts"] = -5
    records.loc[1, "id_compteur"] = None
    with FakeParisApi(records) as server, dg.instance_for_test() as instance:
        monkeypatch.setenv("BIKE_SOURCE", "paris")
        monkeypatch.setenv("PARIS_OPEN_DATA_URL", server.url)
        settings = Settings.from_env()
        platform = Platform(settings, build_definitions(settings), instance)
        platform.ingest(DAYS[0], DAYS[0])
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_counts"))
        assert event is not None
        metadata = event.asset_materialization.metadata
        assert metadata["run_dropped_records"].value == 2
        assert metadata["run_drop_reasons"].value == {
            "negative_count": 1,
            "missing_counter_id": 1,
        }
        assert len(stored(platform, DAYS[0])) == 2 * 24 - 2


def test_synthetic_source_feeds_the_same_asset(platform: Platform) -> None:
    platform.ingest(date(2021, 10, 30), date(2021, 10, 31))
    day = stored(platform, date(2021, 10, 31))
    assert schema_problems(day) == []
    per_counter = day.groupby("counter_id").size()
    assert per_counter.max() == 25  # the autumn DST day, whole


# --- checks on bad frames ------------------------------------------------------------------


def good_frame() -> pd.DataFrame:
    hours = pd.date_range("2021-03-27T23:00Z", periods=23, freq="h")  # Paris 2021-03-28
    return coerce_tidy(
        pd.DataFrame(
            {
                "counter_id": "a",
                "counter_name": "A",
                "site_id": "1",
                "site_name": "S",
                "timestamp": hours,
                "count": 3,
                "lat": 48.8,
                "lon": 2.3,
                "installation_date": "2020-01-01",
            }
        )
    )


def test_checks_pass_on_a_good_frame() -> None:
    frame = good_frame()
    for result in (
        check_schema(frame),
        check_counts(frame),
        check_unique_keys(frame),
        check_completeness(frame, 0.9),
    ):
        assert result.passed, result.metadata


def test_checks_fail_on_bad_frames() -> None:
    frame = good_frame()
    assert not check_schema(frame.assign(count=frame["count"].astype(float))).passed
    assert not check_schema(frame.drop(columns=["lat"])).passed
    assert not check_counts(frame.assign(count=-1)).passed
    assert not check_counts(frame.assign(count=1.5)).passed
    assert not check_unique_keys(pd.concat([frame, frame.head(1)])).passed
    holes = check_completeness(frame.iloc[::2], 0.9)
    assert not holes.passed and holes.severity == dg.AssetCheckSeverity.WARN
    assert holes.metadata["worst_day_ratio"].value == pytest.approx(12 / 23, abs=1e-3)
    # a counter that starts later does not make the days before it look incomplete
    next_day = frame.assign(timestamp=frame["timestamp"] + pd.Timedelta(hours=23))  # 03-29
    full = pd.concat([frame, next_day, next_day.assign(counter_id="b")], ignore_index=True)
    assert check_completeness(full, 0.9).passed


@pytest.mark.e2e
def test_contract_cli_materialize_a_month_twice_changes_nothing(tmp_path: Path) -> None:
    july = [date(2021, 7, 1) + timedelta(days=i) for i in range(31)]
    records = make_records(july, counters=2, seed=5)
    with FakeParisApi(records) as server:
        env = env_without_platform_vars() | {
            "BIKE_SOURCE": "paris",
            "PARIS_OPEN_DATA_URL": server.url,
            "BIKE_DATA_DIR": str(tmp_path / "data"),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        (tmp_path / "home").mkdir()
        dagster = Path(sys.executable).with_name("dagster")
        command = [
            str(dagster),
            "asset",
            "materialize",
            "-m",
            "bike_assets.definitions",
            "--select",
            "raw_counts",
            "--partition-range",
            "2021-07-01...2021-07-31",
        ]
        for _ in range(2):
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
            )
            assert done.returncode == 0, done.stderr[-3000:]
        assert server.requests == 2 * 31
        check = (
            "import os, pandas as pd\n"
            "from bike_assets.definitions import defs\n"
            "days = pd.date_range('2021-07-01', '2021-07-31').strftime('%Y-%m-%d')\n"
            "frames = [defs.load_asset_value('raw_counts', partition_key=d) for d in days]\n"
            "total = pd.concat(frames)\n"
            "print(len(total), total.duplicated(['counter_id', 'timestamp']).sum(),"
            " list(total.columns) == " + repr(TIDY_COLUMNS) + ")\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", check],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == [str(len(records)), "0", "True"]
    assert os.path.exists(tmp_path / "data" / "warehouse.duckdb")


def test_a_backfill_logs_its_progress_every_n_days_and_stores_every_day(
    platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = [date(2021, 5, 1) + timedelta(days=i) for i in range(10)]
    records = make_records(days, counters=2, seed=6)
    with FakeParisApi(records) as server, dg.instance_for_test() as instance:
        platform = paris_platform(monkeypatch, server.url, instance)
        config = {"ops": {"raw_counts": {"config": {"progress_every_days": 3}}}}
        result = platform.ingest(days[0], days[-1], run_config=config)
        assert result.success
        assert server.requests == len(days)  # progress is reported, the fetch is not split
        progress = [
            entry.user_message
            for entry in instance.all_logs(result.run_id)
            if entry.user_message.startswith("raw_counts progress")
        ]
        total = sum(len(stored(platform, d)) for d in days)
    assert total == len(records)
    assert [m.split(": ", 1)[1].split(" (")[0] for m in progress] == [
        "3/10 days",
        "6/10 days",
        "9/10 days",
        "10/10 days",
    ]
    assert f"{2 * 24 * 3:,} rows so far, 7 days left" in progress[0]
    assert "days/s" in progress[0] and "rows/s" in progress[0] and "ETA" in progress[0]
    assert "0 days left" in progress[-1]
