"""Issue #13 Build 4: any hour is served from cached whole days, with the pipeline's own numbers.

Hours outside the forecast window used to cost one pipeline call each; now the first request of
a day computes that day for every counter in one call (`bike_serving.day_cache`). Speed is
measured by bench/serve.py, not asserted here; these tests pin what must not change: the
numbers are exactly what `pipeline.predict` gives for the same rows.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from litestar.testing import TestClient

from bike_assets.ml.model import predict_counts
from bike_assets_tests.serving_fixtures import (
    API_KEY,
    COUNTERS,
    FIXED_NOW,
    metric,
    publish,
    serving_client,
    trained,
    v1_client,
)
from bike_serving.day_cache import HOURS_PER_DAY, DayCache
from bike_serving.forecast_cache import predict_rows
from bike_serving.prediction import OFFLOAD_RECORDS

Client = TestClient[Any]
PARIS = ZoneInfo("Europe/Paris")
# 1971 .. 2098: every hour /predict accepts, far from the window (2024-06-03/04)
FIRST_HOUR = int(datetime(1971, 1, 1, tzinfo=UTC).timestamp()) // 3600
LAST_HOUR = int(datetime(2099, 1, 1, tzinfo=UTC).timestamp()) // 3600


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with v1_client(tmp_path, max_records=50_000) as c:
        yield c


def pipeline_counts(counter_ids: list[str], hours: np.ndarray) -> np.ndarray:
    """`pipeline.predict` on the raw rows, one call for all of them."""
    frame = pd.DataFrame(
        {
            "counter_id": counter_ids,
            "timestamp": pd.to_datetime(hours * 3600, unit="s", utc=True),
        }
    )
    return predict_counts(trained("1"), frame)


def iso(hour: int, rng: np.random.Generator) -> str:
    """The hour as a client may send it: UTC, Paris offset or naive Paris, minutes inside."""
    instant = datetime.fromtimestamp(hour * 3600 + int(rng.integers(0, 3600)), UTC)
    form = int(rng.integers(0, 3))
    if form == 0:
        return instant.isoformat()
    paris = instant.astimezone(PARIS)
    return paris.isoformat() if form == 1 else paris.replace(tzinfo=None).isoformat()


def served(client: Client, ids: list[str], stamps: list[str]) -> np.ndarray:
    records = [{"counter_id": c, "timestamp": t} for c, t in zip(ids, stamps, strict=True)]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    return np.array([p["predicted_count"] for p in response.json()["predictions"]])


def hours_of(stamps: list[str]) -> np.ndarray:
    """The hour of each stamp, naive ones read as Paris wall-clock time (zoneinfo's fold=0)."""
    instants = [datetime.fromisoformat(s) for s in stamps]
    aware = [d if d.tzinfo else d.replace(tzinfo=PARIS) for d in instants]
    return np.array([int(d.timestamp()) // 3600 for d in aware])


def test_single_records_at_random_hours_equal_the_pipeline(client: Client) -> None:
    rng = np.random.default_rng(13)
    ids = [COUNTERS[i] for i in rng.integers(0, len(COUNTERS), 60)]
    stamps = [iso(h, rng) for h in rng.integers(FIRST_HOUR, LAST_HOUR, 60).tolist()]
    got = np.array([served(client, [c], [s])[0] for c, s in zip(ids, stamps, strict=True)])
    np.testing.assert_array_equal(got, pipeline_counts(ids, hours_of(stamps)))
    # each single-hour miss computed its whole day once; asking again reads the cache
    assert metric(client, "bike_predictions_total", source="day_cache") == 60
    again = np.array([served(client, [c], [s])[0] for c, s in zip(ids, stamps, strict=True)])
    np.testing.assert_array_equal(again, got)
    days = client.app.state.services.holder.require().days
    assert len(days) == len(set((hours_of(stamps) // HOURS_PER_DAY).tolist()))


def test_every_hour_of_a_cached_day_equals_the_pipeline(client: Client) -> None:
    """After one record of a day, every counter x hour of it (DST day: 2024-10-27) is exact."""
    day_start = int(datetime(2024, 10, 27, tzinfo=UTC).timestamp()) // 3600
    served(client, [COUNTERS[0]], [datetime.fromtimestamp(day_start * 3600, UTC).isoformat()])
    hours = np.tile(np.arange(day_start, day_start + 24), len(COUNTERS))
    ids = list(np.repeat(COUNTERS, 24))
    stamps = [datetime.fromtimestamp(h * 3600, UTC).isoformat() for h in hours.tolist()]
    before = metric(client, "bike_predictions_total", source="day_cache") or 0
    np.testing.assert_array_equal(served(client, ids, stamps), pipeline_counts(ids, hours))
    assert metric(client, "bike_predictions_total", source="day_cache") == before + len(ids)


def test_big_batches_of_random_hours_equal_the_pipeline(client: Client) -> None:
    """Both ways of a batch: on the event loop (few days: filled) and in a worker thread above
    OFFLOAD_RECORDS (thousands of days: row by row), mixed with the forecast window."""
    rng = np.random.default_rng(8)
    window = int(datetime(2024, 6, 3, 6, tzinfo=UTC).timestamp()) // 3600
    for n, hours in (
        (40, rng.integers(window + 200, window + 230, 40)),  # 2 days: filled
        (OFFLOAD_RECORDS + 500, rng.integers(FIRST_HOUR, LAST_HOUR, OFFLOAD_RECORDS + 500)),
    ):
        hours[::7] = window + rng.integers(0, 30, len(hours[::7]))  # some in the window
        ids = [COUNTERS[i] for i in rng.integers(0, len(COUNTERS), n)]
        stamps = [iso(h, rng) for h in hours.tolist()]
        np.testing.assert_array_equal(
            served(client, ids, stamps), pipeline_counts(ids, hours_of(stamps))
        )
    assert (metric(client, "bike_predictions_total", source="pipeline") or 0) > 0
    assert (metric(client, "bike_predictions_total", source="day_cache") or 0) > 0


def test_a_forecast_week_outside_the_window_is_cached_by_counter_day(client: Client) -> None:
    """168 hours of one counter: 8 counter-days (192 rows) computed in one call, then read."""
    start = datetime(2030, 1, 7, 5, tzinfo=UTC)
    params = {"counter_id": COUNTERS[2], "start": start.isoformat(), "hours": "168"}
    hours = np.arange(168) + int(start.timestamp()) // 3600
    for _ in range(2):
        body = client.get("/forecast", params=params).json()
        got = np.array([p["predicted_count"] for p in body["predictions"]])
        np.testing.assert_array_equal(got, pipeline_counts([COUNTERS[2]] * 168, hours))
    assert metric(client, "bike_predictions_total", source="day_cache") == 2 * 168
    assert len(client.app.state.services.holder.require().days) == 8


def test_hours_scattered_over_many_days_go_row_by_row_and_are_not_cached(
    client: Client,
) -> None:
    """300 hours on 300 days: 300 counter-days would be 24x the work, so the rows are predicted
    as they are."""
    first = int(datetime(2040, 1, 1, tzinfo=UTC).timestamp()) // 3600
    hours = first + 24 * np.arange(300) + 7
    stamps = [datetime.fromtimestamp(h * 3600, UTC).isoformat() for h in hours.tolist()]
    ids = [COUNTERS[0]] * len(stamps)
    np.testing.assert_array_equal(served(client, ids, stamps), pipeline_counts(ids, hours))
    assert metric(client, "bike_predictions_total", source="pipeline") == 300
    assert len(client.app.state.services.holder.require().days) == 0


def test_cached_days_survive_the_forecast_window_moving(tmp_path: Path) -> None:
    publish(tmp_path, trained("1"), "1")
    now = [FIXED_NOW]
    with serving_client(tmp_path, clock=lambda: now[0]) as c:
        served(c, [COUNTERS[1]], ["2031-02-03T08:00:00+01:00"])
        days = c.app.state.services.holder.require().days
        now[0] = FIXED_NOW + timedelta(days=1)
        reload = c.post("/admin/reload", headers={"X-API-Key": API_KEY})
        assert reload.json()["result"] == "refreshed"
        assert c.app.state.services.holder.require().days is days  # same model: same days
        assert len(days) == 1


def _counting(calls: list[int], codes: Any, hours: Any) -> np.ndarray:
    calls.append(len(codes))
    return predict_rows(trained("1"), np.asarray(sorted(COUNTERS), dtype=object), codes, hours)


def test_concurrent_misses_of_one_counter_day_make_one_pipeline_call() -> None:
    calls: list[int] = []
    days = DayCache(functools.partial(_counting, calls), len(COUNTERS))
    day_start = int(datetime(2040, 5, 5, tzinfo=UTC).timestamp()) // 3600
    code = 3

    async def ask(hour: int) -> float:
        answer = await days.predict(np.array([code]), np.array([hour], dtype=np.int64))
        return float(answer.values[0])

    async def many() -> list[float]:
        return await asyncio.gather(*(ask(day_start + i) for i in range(24)))

    got = asyncio.run(many())
    assert calls == [HOURS_PER_DAY]  # one call: the whole day of that counter
    expected = pipeline_counts([sorted(COUNTERS)[code]] * 24, np.arange(24) + day_start)
    np.testing.assert_array_equal(got, expected)


def test_memory_is_bounded_and_evicted_days_are_computed_again() -> None:
    calls: list[int] = []
    day_bytes = len(COUNTERS) * (HOURS_PER_DAY * 8 + 1)  # values + the filled flag
    days = DayCache(functools.partial(_counting, calls), len(COUNTERS), max_bytes=4 * day_bytes)
    assert days.capacity == 4
    first = 24 * 20_000
    for d in range(10):
        days.predict_blocking(np.array([0]), np.array([first + 24 * d], dtype=np.int64))
    assert len(days) == 4
    assert len(calls) == 10
    answer = days.predict_blocking(np.array([0]), np.array([first], dtype=np.int64))  # evicted
    assert len(calls) == 11
    expected = pipeline_counts([sorted(COUNTERS)[0]], np.array([first]))
    np.testing.assert_array_equal(answer.values, expected)


def test_a_day_asked_for_a_second_counter_is_computed_for_every_counter() -> None:
    calls: list[int] = []
    days = DayCache(functools.partial(_counting, calls), len(COUNTERS))
    hour = int(datetime(2041, 3, 3, 9, tzinfo=UTC).timestamp()) // 3600

    def ask(code: int) -> float:
        answer = days.predict_blocking(np.array([code]), np.array([hour], dtype=np.int64))
        return float(answer.values[0])

    got = [ask(0), ask(1)]  # first counter alone, then the rest of the day in one call
    assert calls == [HOURS_PER_DAY, (len(COUNTERS) - 1) * HOURS_PER_DAY]
    got += [ask(code) for code in range(2, len(COUNTERS))]  # no call any more
    assert len(calls) == 2
    np.testing.assert_array_equal(
        got, pipeline_counts(sorted(COUNTERS), np.full(len(COUNTERS), hour))
    )
