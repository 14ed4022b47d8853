"""Fuzzing the public endpoints: whatever arrives, the answer is never a 5xx and every error is
the JSON error shape. Bounded (150 examples per property, no deadline) to stay fast."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from bike_assets_tests.serving_fixtures import COUNTERS, publish, serving_client, trained
from bike_serving.timestamps import hour_of, parse_timestamps

Client = TestClient[Any]
JSON_HEADERS = {"content-type": "application/json"}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
zones = st.sampled_from(
    [None, UTC, ZoneInfo("Europe/Paris"), timezone(timedelta(hours=-9, minutes=-30))]
)
iso_timestamps = st.builds(
    lambda dt, tz, spec: (dt.replace(tzinfo=tz) if tz else dt).isoformat(timespec=spec),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    zones,
    st.sampled_from(["hours", "minutes", "seconds", "microseconds"]),
)
counter_ids = st.sampled_from(COUNTERS) | st.text(max_size=12)
timestamps = iso_timestamps | st.text(max_size=30) | json_values
records = st.fixed_dictionaries(
    {"counter_id": counter_ids | json_values, "timestamp": timestamps},
    optional={"extra": json_values},
)
# mostly well-formed records, so that the prediction paths (cache, pipeline, DST, odd offsets,
# far years) are fuzzed too, not only the validation
good_records = st.fixed_dictionaries(
    {"counter_id": st.sampled_from(COUNTERS), "timestamp": iso_timestamps}
)
predict_bodies = (
    json_values
    | st.fixed_dictionaries({"records": st.lists(records, max_size=6) | json_values})
    | st.fixed_dictionaries({"records": st.lists(good_records, min_size=1, max_size=6)})
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    publish(data_dir, trained("1"), "1")
    with serving_client(data_dir, max_records=5) as c:
        yield c


def assert_no_server_error(response: Any) -> None:
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix reached
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["status_code"] == response.status_code
        assert isinstance(body["detail"], str)
        assert body["detail"]
    else:
        assert all(p["predicted_count"] >= 0 for p in response.json().get("predictions", []))


@FUZZ
@given(body=predict_bodies)
def test_predict_never_fails_on_json(client: Client, body: Any) -> None:
    assert_no_server_error(
        client.post("/predict", content=json.dumps(body).encode(), headers=JSON_HEADERS)
    )


@FUZZ
@given(
    body=st.binary(max_size=200),
    content_type=st.sampled_from(["application/json", "text/plain", ""]),
)
def test_predict_never_fails_on_bytes(client: Client, body: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert_no_server_error(client.post("/predict", content=body, headers=headers))


forecast_params = st.fixed_dictionaries(
    {"counter_id": st.sampled_from(COUNTERS)},
    optional={"start": iso_timestamps, "hours": st.integers(-5, 800).map(str)},
)


@FUZZ
@given(
    params=forecast_params
    | st.dictionaries(
        st.sampled_from(["counter_id", "start", "hours"]) | st.text(max_size=8),
        st.sampled_from(COUNTERS)
        | iso_timestamps
        | st.integers(-1000, 2000).map(str)
        | st.text(max_size=20),
        max_size=4,
    ),
    # a raw query string: printable ASCII, the only thing a URL can carry unescaped
    raw=st.none()
    | st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40
    ),
)
def test_forecast_never_fails(client: Client, params: dict[str, str], raw: str | None) -> None:
    if raw is None:
        response = client.get("/forecast", params=params)
    else:
        response = client.get(f"/forecast?{raw}")
    assert_no_server_error(response)


# Forms and instants where a vectorised parse could disagree with Python's per-row one:
# DST gap and repeated hour (naive and with offsets), forms pandas declines, sub-second values.
EDGE_STAMPS = [
    "2024-03-31T02:30:00",
    "2024-03-31T01:59:59.999999",
    "2024-03-31T03:00:00",
    "2024-10-27T02:30:00",
    "2024-10-27T02:30:00+01:00",
    "2024-10-27T00:59:59+00:00",
    "2024-W23-1",
    "2024-06-03T08:00:00+02:00:30",
    "2024-06-03 08:00",
    "20240603T0800",
    "1970-01-01T00:00:00Z",
    "2099-12-31T23:59:59.999999Z",
]
in_range_stamps = st.builds(
    lambda dt, tz, spec: (dt.replace(tzinfo=tz) if tz else dt).isoformat(timespec=spec),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30)),
    zones,
    st.sampled_from(["hours", "minutes", "seconds", "microseconds"]),
)


@FUZZ
@given(stamps=st.lists(in_range_stamps | st.sampled_from(EDGE_STAMPS), min_size=9, max_size=40))
@example(stamps=EDGE_STAMPS)
def test_batch_hours_equal_per_row_hours(stamps: list[str]) -> None:
    """The vectorised hours of a batch are what `datetime.timestamp()` gives row by row."""
    parsed = parse_timestamps(stamps, str)
    assert parsed.hours.tolist() == [hour_of(d) for d in parsed.instants]
