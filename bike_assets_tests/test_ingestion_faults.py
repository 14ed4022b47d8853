"""Issue #13: API faults during ingestion lose no stored row and add no duplicate.

The faults are real HTTP answers of the stand-in on 127.0.0.1 (429 with Retry-After, 503, an
answer slower than the client's timeout, a body cut short of its Content-Length), met by a
re-ingestion of days already stored: either the run recovers and stores exactly what the API
holds, or it fails, names the window, and every stored row stays as it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bike_assets.schema import KEY_COLUMNS
from bike_assets.sources.fake_paris_api import CannedResponse, FakeParisApi, make_records
from bike_assets_tests.conftest import Platform
from bike_assets_tests.ingestion_fixtures import failure_message, paris_platform, warehouse_rows

DAYS = [date(2021, 6, 1) + timedelta(days=i) for i in range(4)]
COUNTERS = 3
RECORDS = make_records(DAYS, counters=COUNTERS, seed=4)
MAX_RETRIES = 2  # three attempts per day
TIMEOUT_S = 1.0


@pytest.fixture
def api() -> Iterator[FakeParisApi]:
    with FakeParisApi(RECORDS) as server:
        yield server


@pytest.fixture
def paris(
    platform_env: Path, api: FakeParisApi, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    with dg.instance_for_test() as instance:
        platform = paris_platform(
            monkeypatch,
            api.url,
            instance,
            PARIS_MAX_RETRIES=str(MAX_RETRIES),
            PARIS_HTTP_TIMEOUT=str(TIMEOUT_S),
        )
        assert platform.ingest(DAYS[0], DAYS[-1]).success
        yield platform


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY_COLUMNS).reset_index(drop=True)


def test_transient_faults_are_retried_and_the_rerun_stores_the_same_rows(
    paris: Platform, api: FakeParisApi
) -> None:
    before = sorted_rows(warehouse_rows(paris))
    assert len(before) == len(RECORDS)
    api.reset()
    api.enqueue(
        CannedResponse.rate_limited(retry_after=0),
        CannedResponse.unavailable(503),
        CannedResponse.slow(TIMEOUT_S + 1.5),  # read timeout, then retried
        CannedResponse.truncated(keep_bytes=300),  # connection dropped mid-body, then retried
    )
    result = paris.ingest(DAYS[0], DAYS[-1])

    assert result.success
    statuses = Counter(entry.status for entry in api.log)
    assert statuses[429] == 1 and statuses[503] == 1
    assert api.requests >= len(DAYS) + 4  # every fault cost a retry
    after = sorted_rows(warehouse_rows(paris))
    assert not after.duplicated(KEY_COLUMNS).any()
    pd.testing.assert_frame_equal(after, before)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (CannedResponse.rate_limited(retry_after=0), "last status 429"),
        (CannedResponse.unavailable(503), "last status 503"),
        (CannedResponse.slow(TIMEOUT_S + 1.5), "no response within"),
        (CannedResponse.truncated(keep_bytes=300), "body cut short"),
        (CannedResponse.malformed(b'[{"id_compteur": "x", "sum_cou'), "malformed body"),
    ],
    ids=["429", "503", "timeout", "truncated", "truncated-and-announced-so"],
)
def test_faults_beyond_the_retries_fail_the_run_and_keep_every_row(
    paris: Platform, api: FakeParisApi, fault: CannedResponse, says: str
) -> None:
    before = sorted_rows(warehouse_rows(paris))
    day = DAYS[2]
    api.enqueue(*[fault] * (MAX_RETRIES + 1))
    result = paris.ingest(day, day, raise_on_error=False)

    assert not result.success
    message = failure_message(result)
    assert says in message and f"[{day.isoformat()}T00:00:00+02:00" in message
    pd.testing.assert_frame_equal(sorted_rows(warehouse_rows(paris)), before)
