"""Issue #13, ingestion: a stored day is never lost silently.

Each test reproduces one defect found by probing the platform (the Paris API stand-in is a real
HTTP server on 127.0.0.1, the warehouse a real DuckDB file):

1. an empty (or much smaller) answer replaced a stored day and the run succeeded;
2. the checks of a one-day run read the whole table;
3. a kill between the partition's DELETE and INSERT left the day empty.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pandas as pd
import pytest

import bike_assets
from bike_assets.assets.ingestion import Shrink, shrunk_days
from bike_assets.sources.fake_paris_api import CannedResponse, FakeParisApi, make_records
from bike_assets_tests.conftest import Platform
from bike_assets_tests.ingestion_fixtures import (
    failure_message,
    paris_platform,
    stored,
    warehouse_rows,
)

DAYS = [date(2021, 6, 1) + timedelta(days=i) for i in range(3)]
COUNTERS = 3
ALLOW_SHRINK = {"ops": {"raw_counts": {"config": {"allow_shrink": True}}}}


@pytest.fixture
def api() -> Iterator[FakeParisApi]:
    with FakeParisApi(make_records(DAYS, counters=COUNTERS, seed=2)) as server:
        yield server


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


# --- 1. an empty or much smaller answer -----------------------------------------------------


def test_an_empty_answer_for_a_stored_day_fails_the_run_and_keeps_the_day(
    paris: Platform, api: FakeParisApi
) -> None:
    day = DAYS[0]
    assert paris.ingest(day, day).success
    before = stored(paris, day)
    assert len(before) == COUNTERS * 24

    api.enqueue(CannedResponse(body=b"[]"))  # the portal answers "no rows" for that day
    result = paris.ingest(day, day, raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert "2021-06-01" in message and "[2021-06-01T00:00:00+02:00" in message
    assert f"stored {COUNTERS * 24} -> fetched 0" in message
    assert "allow_shrink" in message  # says how to do it on purpose
    pd.testing.assert_frame_equal(stored(paris, day), before)


def test_a_sharply_smaller_answer_fails_the_run_and_keeps_the_day(
    paris: Platform, platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paris.ingest(DAYS[0], DAYS[-1])
    before = warehouse_rows(paris)
    # The same days, but the portal now knows one counter of three.
    with FakeParisApi(make_records(DAYS, counters=1, seed=2)) as smaller:
        shrunk = paris_platform(monkeypatch, smaller.url, paris.instance)
        result = shrunk.ingest(DAYS[0], DAYS[-1], raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "3 stored day(s)" in message
    for day in DAYS:
        assert f"{day}: stored {COUNTERS * 24} -> fetched 24" in message
    pd.testing.assert_frame_equal(warehouse_rows(paris), before)


def test_allow_shrink_replaces_the_day_and_the_completeness_check_flags_it(
    paris: Platform, api: FakeParisApi
) -> None:
    day = DAYS[1]
    paris.ingest(day, day)
    api.enqueue(CannedResponse(body=b"[]"))
    result = paris.ingest(day, day, run_config=ALLOW_SHRINK)
    assert result.success
    assert stored(paris, day).empty
    completeness = check_results(result)["raw_counts_completeness"]
    assert not completeness.passed
    assert completeness.severity == dg.AssetCheckSeverity.WARN
    assert completeness.metadata["days_without_rows"].value == [day.isoformat()]


def test_a_day_never_stored_may_come_back_empty(paris: Platform, api: FakeParisApi) -> None:
    api.enqueue(CannedResponse(body=b"[]"))
    assert paris.ingest(DAYS[2], DAYS[2]).success  # nothing to lose: not a shrink


@pytest.mark.parametrize(
    ("stored_rows", "fetched", "expected"),
    [
        ({}, {"d1": 0}, []),  # nothing stored
        ({"d1": 0}, {}, []),
        ({"d1": 72}, {"d1": 72}, []),
        ({"d1": 72}, {"d1": 80}, []),  # grows
        ({"d1": 72}, {"d1": 58}, []),  # 0.806 kept
        ({"d1": 72}, {"d1": 57}, [Shrink("d1", 72, 57)]),  # 0.79 kept
        ({"d1": 72}, {}, [Shrink("d1", 72, 0)]),  # emptied
        ({"d2": 10, "d1": 5}, {"d2": 10}, [Shrink("d1", 5, 0)]),
    ],
)
def test_shrunk_days_decision_table(
    stored_rows: dict[str, int], fetched: dict[str, int], expected: list[Shrink]
) -> None:
    assert shrunk_days(stored_rows, fetched, min_kept_ratio=0.8) == expected


# --- 2. the checks judge exactly the run's days ---------------------------------------------


def test_the_checks_of_a_one_day_run_read_only_that_day(paris: Platform) -> None:
    paris.ingest(DAYS[0], DAYS[-1])
    result = paris.ingest(DAYS[1], DAYS[1])
    checks = check_results(result)
    assert set(checks) == {
        "raw_counts_schema",
        "raw_counts_non_negative_integers",
        "raw_counts_unique_keys",
        "raw_counts_completeness",
    }
    # The history holds 3 days (216 rows); the run's checks saw the run's 72 and nothing else.
    assert checks["raw_counts_schema"].metadata["rows"].value == COUNTERS * 24
    assert checks["raw_counts_completeness"].metadata["days"].value == 1
    assert all(c.metadata["partitions_checked"].value == 1 for c in checks.values())
    assert all(c.passed for c in checks.values())


# --- 3. a kill between the DELETE and the INSERT --------------------------------------------

# Run in a child process: ingest one day, but stop for good right after the IO manager has issued
# the partition's DELETE (the library's insert step is wrapped to signal and sleep), so the
# parent can SIGKILL it exactly between the two statements.
_KILLED_RUN = """
import sys, time
from pathlib import Path
import dagster as dg
from dagster_duckdb_pandas import DuckDBPandasTypeHandler

marker, day = Path(sys.argv[1]), sys.argv[2]
insert = DuckDBPandasTypeHandler.handle_output

def pause_between_delete_and_insert(self, context, table_slice, obj, connection):
    marker.write_text("the partition's DELETE has run")
    time.sleep(120)
    return insert(self, context, table_slice, obj, connection)

DuckDBPandasTypeHandler.handle_output = pause_between_delete_and_insert

from bike_assets.definitions import build_definitions
from bike_assets.settings import Settings

job = build_definitions(Settings.from_env()).resolve_job_def("ingest_job")
job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), partition_key=day)
"""


@pytest.mark.e2e
def test_a_run_killed_between_delete_and_insert_keeps_the_day(
    paris: Platform, api: FakeParisApi, tmp_path: Path
) -> None:
    day = DAYS[0]
    paris.ingest(day, day)
    before = stored(paris, day)

    marker = tmp_path / "deleted"
    code_root = Path(bike_assets.__file__).resolve().parents[1]  # the code under test
    env = os.environ | {"PYTHONPATH": str(code_root)}
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, str(marker), day.isoformat()],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the child never reached the insert"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)  # OOM killer, node loss, `docker kill`
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()

    assert child.returncode == -signal.SIGKILL
    pd.testing.assert_frame_equal(stored(paris, day), before)


def test_the_bigquery_overwrite_is_one_transaction_after_a_staged_load() -> None:
    # BigQuery cannot run here; this pins the script the GCP path sends (bigquery_io.py).
    from bike_assets.resources.bigquery_io import staged_overwrite_sql

    where = "DATETIME(timestamp, 'Europe/Paris') >= '2021-06-01 00:00:00'"
    script = staged_overwrite_sql("p.d.raw_counts", "p.d.stage", where, ["COUNTER_ID", "COUNT"])
    assert script.splitlines() == [
        "BEGIN TRANSACTION;",
        f"DELETE FROM `p.d.raw_counts` WHERE {where};",
        "INSERT INTO `p.d.raw_counts` (`COUNTER_ID`, `COUNT`) "
        "SELECT `COUNTER_ID`, `COUNT` FROM `p.d.stage`;",
        "COMMIT TRANSACTION;",
    ]
    # an empty frame (allowed by config only) is a single, atomic DELETE
    assert staged_overwrite_sql("p.d.raw_counts", None, where) == (
        f"DELETE FROM `p.d.raw_counts` WHERE {where};"
    )


class RecordingBigQuery:
    """A stand-in for `google.cloud.bigquery.Client` that records what the handler sends.

    BigQuery cannot run here; what is under test is our handler's order of operations, not
    BigQuery. `fail_on` makes the statement containing that text raise, like a failed job.
    """

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def _job(self, text: str) -> Any:
        self.calls.append(text)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError(f"job failed: {self.fail_on}")
        return SimpleNamespace(result=lambda: None)

    def load_table_from_dataframe(self, frame: pd.DataFrame, table: str, **_: Any) -> Any:
        return self._job(f"LOAD {len(frame)} rows INTO {table}")

    def query(self, sql: str) -> Any:
        return self._job(sql)

    def delete_table(self, table: str, not_found_ok: bool = False) -> None:
        self.calls.append(f"DROP {table}")


def bigquery_write(frame: pd.DataFrame, client: RecordingBigQuery) -> None:
    from dagster._core.definitions.partitions.utils import TimeWindow
    from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

    from bike_assets.resources.bigquery_io import StagedBigQueryPandasTypeHandler

    window = TimeWindow(
        pd.Timestamp("2021-06-01", tz="Europe/Paris"), pd.Timestamp("2021-06-02", tz="Europe/Paris")
    )
    table_slice = TableSlice(
        table="raw_counts",
        schema="bike",
        database="proj",
        partition_dimensions=[
            TablePartitionDimension("DATETIME(timestamp, 'Europe/Paris')", window)
        ],
    )
    context = dg.build_output_context(asset_key="raw_counts")
    StagedBigQueryPandasTypeHandler().handle_output(context, table_slice, frame, client)


def test_the_bigquery_handler_loads_a_staging_table_then_swaps_in_one_transaction() -> None:
    frame = pd.DataFrame({"counter_id": ["a", "b"], "count": [1, 2]})
    client = RecordingBigQuery()
    bigquery_write(frame, client)
    load, create, script, drop = client.calls
    staging = load.split(" INTO ")[1]
    assert load == f"LOAD 2 rows INTO {staging}" and staging.startswith("proj.bike.raw_counts__")
    assert create == f"CREATE TABLE IF NOT EXISTS `proj.bike.raw_counts` LIKE `{staging}`"
    assert script.startswith("BEGIN TRANSACTION;") and script.endswith("COMMIT TRANSACTION;")
    assert (
        "DELETE FROM `proj.bike.raw_counts` WHERE DATETIME(timestamp, 'Europe/Paris') >= " in script
    )
    assert f"SELECT `COUNTER_ID`, `COUNT` FROM `{staging}`" in script
    assert drop == f"DROP {staging}"


def test_a_failed_bigquery_load_deletes_nothing_and_a_failed_swap_drops_the_staging() -> None:
    frame = pd.DataFrame({"counter_id": ["a"], "count": [1]})
    failed_load = RecordingBigQuery(fail_on="LOAD")
    with pytest.raises(RuntimeError):
        bigquery_write(frame, failed_load)
    assert not any("DELETE" in call for call in failed_load.calls)  # stored rows untouched

    failed_swap = RecordingBigQuery(fail_on="BEGIN TRANSACTION")
    with pytest.raises(RuntimeError):
        bigquery_write(frame, failed_swap)
    assert failed_swap.calls[-1].startswith("DROP proj.bike.raw_counts__")  # no staging left
