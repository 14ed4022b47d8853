"""`ParisOpenDataClient` against a real local HTTP server speaking the Explore v2.1 shape."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import requests

from bike_assets.schema import schema_problems
from bike_assets.sources.base import SourceError
from bike_assets.sources.fake_paris_api import CannedResponse, FakeParisApi, make_records
from bike_assets.sources.paris_api import ParisOpenDataClient
from bike_assets_tests.local_http import free_port

PARIS = ZoneInfo("Europe/Paris")
DAYS = [date(2021, 3, 25) + timedelta(days=i) for i in range(8)] + [
    date(2021, 10, 29) + timedelta(days=i) for i in range(5)
]
COUNTERS = 3
EXPORTS = "/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs/exports/json"


def paris(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=PARIS)


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return make_records(DAYS, counters=COUNTERS, seed=1)


@pytest.fixture(scope="module")
def server(records: pd.DataFrame) -> Iterator[FakeParisApi]:
    with FakeParisApi(records) as api:
        yield api


@pytest.fixture
def api(server: FakeParisApi) -> Iterator[FakeParisApi]:
    server.reset()
    yield server
    server.reset()  # a failed test must not leave canned faults for the next one


def client(api: FakeParisApi, **overrides: float) -> ParisOpenDataClient:
    settings: dict[str, float] = {
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_factor": 0.01,
        "retry_budget_s": 10.0,
    }
    settings.update(overrides)
    return ParisOpenDataClient(base_url=api.url, **settings)


Keys = set[tuple[str, pd.Timestamp]]


def held_keys(records: pd.DataFrame, start: datetime, end: datetime) -> Keys:
    ts = pd.to_datetime(records["date"], utc=True)
    inside = records[(ts >= start) & (ts < end)]
    return set(zip(inside["id_compteur"], pd.to_datetime(inside["date"], utc=True), strict=True))


def batch_keys(frame: pd.DataFrame) -> Keys:
    return set(zip(frame["counter_id"], frame["timestamp"], strict=True))


def test_multi_day_fetch_returns_exactly_the_rows_held(
    api: FakeParisApi, records: pd.DataFrame
) -> None:
    start, end = paris(2021, 3, 26), paris(2021, 4, 1)
    batch = client(api).fetch(start, end)

    expected = held_keys(records, start, end)
    assert len(expected) == COUNTERS * (6 * 24 - 1)  # six days, one of them 23 h long
    assert len(batch.frame) == len(expected)
    assert batch_keys(batch.frame) == expected
    assert schema_problems(batch.frame) == []
    assert batch.dropped == 0
    held = records.assign(ts=pd.to_datetime(records["date"], utc=True)).set_index(
        ["id_compteur", "ts"]
    )["sum_counts"]
    got = batch.frame.set_index(["counter_id", "timestamp"])["count"]
    assert (got == held.loc[got.index].to_numpy()).all()

    # One exports call per Paris day, windows contiguous, nothing through the capped endpoint.
    log = api.log
    assert batch.requests == len(log) == 6
    assert {entry.path for entry in log} == {EXPORTS}
    assert all(e.params["timezone"] == "UTC" and e.params["order_by"] == "date" for e in log)
    # days are fetched concurrently: order the requests by their window before comparing
    bounds = sorted(e.params["where"].split("'")[1::2] for e in log)
    assert bounds[0][0] == "2021-03-26T00:00:00+01:00"
    assert bounds[-1][1] == "2021-04-01T00:00:00+02:00"
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(bounds))


def test_a_day_above_the_offset_cap_comes_whole_in_one_exports_call() -> None:
    big = make_records([date(2021, 8, 1)], counters=450, seed=2)  # 10,800 rows > 10,000
    with FakeParisApi(big) as api:
        base = api.url + EXPORTS.removesuffix("exports/json")
        capped = requests.get(base + "records", params={"offset": 10_000, "limit": 1}, timeout=5)
        assert capped.status_code == 400
        assert capped.json() == {
            "error_code": "InvalidRESTParameterError",
            "message": "Invalid value for sum of offset + limit API parameter: 10001 was found "
            "but <= 10000 is expected.",
        }
        api.reset()
        batch = client(api).fetch(paris(2021, 8, 1), paris(2021, 8, 2))
        assert len(batch.frame) == len(big) == 10_800
        assert [e.path for e in api.log] == [EXPORTS]
        assert all("offset" not in e.params and "limit" not in e.params for e in api.log)


def test_429_with_retry_after_is_waited_for_then_succeeds(api: FakeParisApi) -> None:
    api.enqueue(CannedResponse.rate_limited(retry_after=1))
    started = time.monotonic()
    batch = client(api).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    elapsed = time.monotonic() - started

    assert len(batch.frame) == COUNTERS * 24
    assert [e.status for e in api.log] == [429, 200]
    assert batch.requests == 2
    gap = api.log[1].at - api.log[0].at
    assert 0.95 <= gap < 2.0
    assert elapsed < 3.0


def test_garbled_retry_after_falls_back_to_backoff(api: FakeParisApi) -> None:
    garbled = CannedResponse(status=429, body=b"{}", headers={"Retry-After": "soon-ish"})
    batch = client(api).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    api.reset()
    api.enqueue(garbled)
    again = client(api).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    assert [e.status for e in api.log] == [429, 200]
    pd.testing.assert_frame_equal(batch.frame, again.frame)


def test_5xx_flaps_then_succeeds(api: FakeParisApi) -> None:
    api.enqueue(
        CannedResponse.unavailable(503),
        CannedResponse.unavailable(502),
        CannedResponse.unavailable(500),
    )
    batch = client(api, max_retries=3).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    assert [e.status for e in api.log] == [503, 502, 500, 200]
    assert batch.requests == 4
    assert len(batch.frame) == COUNTERS * 24


def test_5xx_beyond_max_retries_raises_with_attempts_and_last_status(api: FakeParisApi) -> None:
    api.enqueue(*[CannedResponse.unavailable(503)] * 5)
    with pytest.raises(SourceError) as err:
        client(api, max_retries=2).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    message = str(err.value)
    assert "3 attempt(s)" in message
    assert "last status 503" in message
    assert "2021-03-29T00:00:00+02:00" in message
    assert api.requests == 3


def test_retry_after_longer_than_the_budget_gives_up_at_once(api: FakeParisApi) -> None:
    api.enqueue(CannedResponse.rate_limited(retry_after=30))
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"1 attempt\(s\).*last status 429"):
        client(api, retry_budget_s=1.0).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    assert time.monotonic() - started < 1.0
    assert api.requests == 1


def test_slow_response_beyond_the_timeout_raises_after_retries(api: FakeParisApi) -> None:
    api.enqueue(*[CannedResponse.slow(1.0)] * 3)
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        client(api, timeout_s=0.2, max_retries=2).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    message = str(err.value)
    assert "no response within 0.2 s after 3 attempt(s)" in message
    assert "window [2021-03-29T00:00:00+02:00, 2021-03-30T00:00:00+02:00)" in message
    assert api.requests == 3
    assert time.monotonic() - started < 2.0


def test_400_carries_the_api_message_and_names_the_window(api: FakeParisApi) -> None:
    api.enqueue(CannedResponse.api_error(400, "ODSQLError", "Unknown field: datte"))
    with pytest.raises(SourceError) as err:
        client(api).fetch(paris(2021, 3, 28), paris(2021, 3, 29))
    message = str(err.value)
    assert "HTTP 400 ODSQLError: Unknown field: datte" in message
    assert "window [2021-03-28T00:00:00+01:00, 2021-03-29T00:00:00+02:00) Europe/Paris" in message
    assert api.requests == 1  # a 4xx is not retried


def test_unknown_dataset_404_from_the_server_is_reported(api: FakeParisApi) -> None:
    bad = ParisOpenDataClient(base_url=api.url, dataset="no-such-dataset", timeout_s=2.0)
    with pytest.raises(SourceError, match="HTTP 404 UnknownDatasetError: Unknown dataset"):
        bad.fetch(paris(2021, 3, 28), paris(2021, 3, 29))


@pytest.mark.parametrize(
    ("body", "says"),
    [(b"<html>maintenance</html>", "not JSON"), (b'{"results": []}', "expected a JSON array")],
)
def test_malformed_body_raises_naming_the_window(api: FakeParisApi, body: bytes, says: str) -> None:
    api.enqueue(CannedResponse.malformed(body))
    with pytest.raises(SourceError) as err:
        client(api).fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    assert says in str(err.value)
    assert "2021-03-29T00:00:00+02:00, 2021-03-30T00:00:00+02:00" in str(err.value)


def test_malformed_records_are_dropped_and_counted() -> None:
    recs = make_records([date(2021, 6, 1)], counters=2, seed=3)
    recs["sum_counts"] = recs["sum_counts"].astype(object)
    recs.loc[0, "id_compteur"] = None
    recs.loc[1, "sum_counts"] = None
    recs.loc[2, "sum_counts"] = -3
    with FakeParisApi(recs) as api:
        batch = client(api).fetch(paris(2021, 6, 1), paris(2021, 6, 2))
    assert batch.drop_reasons == {"missing_counter_id": 1, "bad_count": 1, "negative_count": 1}
    assert batch.dropped == 3
    assert len(batch.frame) == len(recs) - 3
    stamps = pd.to_datetime(recs["date"], utc=True)
    for i in (1, 2):
        assert (recs.loc[i, "id_compteur"], stamps[i]) not in batch_keys(batch.frame)


def test_dst_days_come_out_whole(api: FakeParisApi) -> None:
    c = client(api)
    spring = c.fetch(paris(2021, 3, 28), paris(2021, 3, 29)).frame
    autumn = c.fetch(paris(2021, 10, 31), paris(2021, 11, 1)).frame
    assert spring.groupby("counter_id").size().tolist() == [23] * COUNTERS
    assert autumn.groupby("counter_id").size().tolist() == [25] * COUNTERS
    for frame, first in ((spring, "2021-03-27T23:00Z"), (autumn, "2021-10-30T22:00Z")):
        one = frame[frame["counter_id"] == frame["counter_id"].iloc[0]]["timestamp"]
        assert one.iloc[0] == pd.Timestamp(first)
        assert (one.diff().dropna() == pd.Timedelta(hours=1)).all()

    api.reset()
    span = c.fetch(paris(2021, 10, 30), paris(2021, 11, 2)).frame
    assert span.groupby("counter_id").size().tolist() == [24 + 25 + 24] * COUNTERS
    # days are fetched concurrently: order the requests by their window
    wheres = sorted((e.params["where"] for e in api.log), key=lambda w: w.split("'")[1])
    assert wheres[1] == (
        "date >= '2021-10-31T00:00:00+02:00' and date < '2021-11-01T00:00:00+01:00'"
    )
    # Each request is one whole Paris day: bounds at Paris midnights, 24 h, 25 h, 24 h apart.
    bounds = [[datetime.fromisoformat(b) for b in w.split("'")[1::2]] for w in wheres]
    midnights = {b.astimezone(PARIS).time().isoformat() for pair in bounds for b in pair}
    assert midnights == {"00:00:00"}
    assert [(hi - lo).total_seconds() / 3600 for lo, hi in bounds] == [24, 25, 24]


def test_unreachable_api_raises_quickly() -> None:
    port = free_port()  # nothing listens on it
    dead = ParisOpenDataClient(
        base_url=f"http://127.0.0.1:{port}", timeout_s=1.0, max_retries=2, backoff_factor=0.01
    )
    started = time.monotonic()
    with pytest.raises(SourceError) as err:
        dead.fetch(paris(2021, 3, 29), paris(2021, 3, 30))
    assert f"API unreachable at http://127.0.0.1:{port} after 3 attempt(s)" in str(err.value)
    assert "2021-03-29T00:00:00+02:00" in str(err.value)
    assert time.monotonic() - started < 2.0


def test_fetching_twice_gives_equal_frames(api: FakeParisApi) -> None:
    c = client(api)
    first = c.fetch(paris(2021, 3, 27), paris(2021, 3, 30))
    second = c.fetch(paris(2021, 3, 27), paris(2021, 3, 30))
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert str(first.frame["timestamp"].dt.tz) == "UTC"


def test_random_429_and_503_still_give_the_full_window(records: pd.DataFrame) -> None:
    start, end = paris(2021, 3, 25), paris(2021, 4, 2)
    with FakeParisApi(records, fail_ratio=0.3, retry_after_s=0, seed=7) as api:
        batch = client(api, max_retries=10).fetch(start, end)
        statuses = [e.status for e in api.log]
    assert batch_keys(batch.frame) == held_keys(records, start, end)
    assert statuses.count(200) == 8
    assert {429, 503} <= set(statuses)
    assert batch.requests == len(statuses)


def test_window_edges() -> None:
    c = ParisOpenDataClient(base_url="http://127.0.0.1:9")
    assert len(c.fetch(paris(2021, 3, 29), paris(2021, 3, 29)).frame) == 0
    with pytest.raises(ValueError, match="tz-aware"):
        c.fetch(datetime(2021, 3, 29), datetime(2021, 3, 30))


def test_server_reads_plain_date_literals_in_the_requested_timezone(api: FakeParisApi) -> None:
    answer = requests.get(
        api.url + EXPORTS.removesuffix("exports/json") + "records",
        params={
            "where": "date >= date'2021-10-31' and date < '2021-11-01'",
            "timezone": "Europe/Paris",
            "limit": 100,
            "order_by": "date",
        },
        timeout=5,
    ).json()
    assert answer["total_count"] == 25 * COUNTERS
    dates = [r["date"] for r in answer["results"]]
    assert dates[0] == "2021-10-31T00:00:00+02:00"
    assert {"2021-10-31T02:00:00+02:00", "2021-10-31T02:00:00+01:00"} <= set(dates)
    too_many = requests.get(
        api.url + EXPORTS.removesuffix("exports/json") + "records", params={"limit": 101}, timeout=5
    )
    assert too_many.status_code == 400
