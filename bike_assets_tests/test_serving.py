"""The serving API against a real (small) pipeline: endpoints, predictions, errors, auth, metrics.

Every app here runs with a fixed clock (`FIXED_NOW`), so the forecast-cache window is known:
the Paris days 2024-06-03 and 2024-06-04.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from bike_assets.ml.model import predict_counts
from bike_assets_tests.serving_fixtures import (
    API_KEY,
    CACHE_HOURS,
    CACHE_START,
    COUNTERS,
    FIXED_NOW,
    metric,
    publish,
    serving_client,
    trained,
    v1_client,
)
from bike_serving.errors import EXCEPTION_HANDLERS, RETRAIN_COMMAND
from bike_serving.prediction import OFFLOAD_RECORDS

Client = TestClient[Any]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    with v1_client(tmp_path, max_records=200) as c:
        yield c


def pipeline_counts(counter_ids: list[str], timestamps: list[str]) -> np.ndarray:
    """What the artifact itself predicts for these raw rows (naive = Paris, like the API)."""
    stamps = [pd.Timestamp(t) for t in timestamps]
    stamps = [t.tz_localize("Europe/Paris") if t.tzinfo is None else t for t in stamps]
    frame = pd.DataFrame(
        {
            "counter_id": counter_ids,
            "timestamp": pd.to_datetime([t.tz_convert(UTC) for t in stamps]),
        }
    )
    return predict_counts(trained("1"), frame)


def iso_hours(start: datetime, hours: int, step: int = 1) -> list[str]:
    return [(start + timedelta(hours=h)).isoformat() for h in range(0, hours, step)]


def predict(client: Client, counter_ids: list[str], timestamps: list[str]) -> dict[str, Any]:
    records = [
        {"counter_id": c, "timestamp": t} for c, t in zip(counter_ids, timestamps, strict=True)
    ]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def counts_of(body: dict[str, Any]) -> np.ndarray:
    return np.array([p["predicted_count"] for p in body["predictions"]])


# --- health, model ---------------------------------------------------------------------------
def test_live_and_ready(client: Client) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "version": "1"}


def test_counters_lists_what_the_model_knows(client: Client) -> None:
    body = client.get("/counters").json()
    assert body["counters"] == sorted(COUNTERS)
    assert body["model"]["version"] == "1"


def test_champion_shows_pointer_metrics_and_cache(client: Client, tmp_path: Path) -> None:
    body = client.get("/champion").json()
    assert body["version"] == "1"
    # relative to the model store, with the digest that was checked: no server path (#13.6)
    assert re.fullmatch(r"models/v1/model\.skops#sha256=[0-9a-f]{64}", body["model_uri"])
    assert str(tmp_path) not in client.get("/champion").text
    assert body["metrics"] == {"rmse": 12.5, "r2": 0.91}
    assert body["kind"] == "model"
    assert body["trained_range"] == {"start": "2024-05-06", "end": "2024-05-27"}
    # no daily level update yet: MLflow's `champion` alias names the promoted version itself
    assert (body["level_as_of"], body["registry_version"]) == ("", "1")
    assert body["promoted_at"] == "2024-05-28T06:00:00+00:00"
    cache = body["forecast_cache"]
    assert datetime.fromisoformat(cache["start"]) == CACHE_START
    assert cache["hours"] == CACHE_HOURS
    assert cache["counters"] == len(COUNTERS)


# --- predictions are the artifact's own ------------------------------------------------------
def test_predictions_from_the_cache_equal_the_pipeline(client: Client) -> None:
    stamps = iso_hours(CACHE_START, CACHE_HOURS)
    ids = [COUNTERS[i % len(COUNTERS)] for i in range(len(stamps))]
    before = metric(client, "bike_predictions_total", source="cache")
    body = predict(client, ids, stamps)
    np.testing.assert_allclose(counts_of(body), pipeline_counts(ids, stamps), rtol=1e-12)
    assert metric(client, "bike_predictions_total", source="cache") == (before or 0) + len(stamps)
    assert metric(client, "bike_predictions_total", source="pipeline") == 0
    assert body["model"] == {"version": "1", "promoted_at": "2024-05-28T06:00:00+00:00"}
    assert [p["counter_id"] for p in body["predictions"]] == ids
    assert all(p["predicted_count"] >= 0 for p in body["predictions"])


def test_predictions_outside_the_cache_equal_the_pipeline(client: Client) -> None:
    stamps = iso_hours(datetime(2024, 12, 24, 5, tzinfo=UTC), 30)
    ids = [COUNTERS[(3 * i) % len(COUNTERS)] for i in range(len(stamps))]
    body = predict(client, ids, stamps)
    np.testing.assert_allclose(counts_of(body), pipeline_counts(ids, stamps), rtol=1e-12)
    # two UTC days, computed whole for every counter in one call, then read (day_cache)
    assert metric(client, "bike_predictions_total", source="day_cache") == len(stamps)
    assert metric(client, "bike_predictions_total", source="pipeline") == 0


def test_mixed_batch_keeps_input_order(client: Client) -> None:
    inside = iso_hours(CACHE_START + timedelta(hours=5), 20)
    outside = iso_hours(CACHE_START + timedelta(days=30), 20)
    stamps = [s for pair in zip(outside, inside, strict=True) for s in pair]  # interleaved
    ids = [COUNTERS[i % len(COUNTERS)] for i in range(len(stamps))]
    body = predict(client, ids, stamps)
    np.testing.assert_allclose(counts_of(body), pipeline_counts(ids, stamps), rtol=1e-12)
    assert [datetime.fromisoformat(p["timestamp"]) for p in body["predictions"]] == [
        datetime.fromisoformat(s) for s in stamps
    ]


def test_big_batch_answered_off_the_event_loop_is_the_same(tmp_path: Path) -> None:
    """Above OFFLOAD_RECORDS the whole batch is answered in a worker thread: same numbers,
    same 422s naming the record."""
    publish(tmp_path, trained("1"), "1")
    inside = iso_hours(CACHE_START, CACHE_HOURS)
    outside = iso_hours(datetime(2025, 2, 1, tzinfo=UTC), 48)
    stamps = (inside + outside) * 25  # 2,400 records, half in the cache
    ids = [COUNTERS[i % len(COUNTERS)] for i in range(len(stamps))]
    assert len(stamps) > OFFLOAD_RECORDS
    with serving_client(tmp_path) as c:
        body = predict(c, ids, stamps)
        np.testing.assert_allclose(counts_of(body), pipeline_counts(ids, stamps), rtol=1e-12)
        assert metric(c, "bike_predictions_total", source="cache") == len(stamps) // 2
        assert metric(c, "bike_predictions_total", source="day_cache") == len(stamps) // 2

        bad = _records(*stamps)
        bad["records"][2345]["timestamp"] = "2024-06-03T25:00:00"
        assert_error(c.post("/predict", json=bad), 422, "records[2345].timestamp", "25:00")
        bad = _records(*stamps)
        bad["records"][2100]["counter_id"] = "ghost"
        assert_error(c.post("/predict", json=bad), 422, "records[2100].counter_id", "ghost")


def test_single_record_paths_equal_the_pipeline(client: Client) -> None:
    for stamp in ("2024-06-03T08:00:00+02:00", "2031-06-03T08:00:00+02:00"):  # cache, fallback
        body = predict(client, [COUNTERS[2]], [stamp])
        assert counts_of(body)[0] == pytest.approx(pipeline_counts([COUNTERS[2]], [stamp])[0])


def test_naive_timestamp_means_paris_and_is_echoed_with_offset(client: Client) -> None:
    naive = predict(client, [COUNTERS[0]] * 2, ["2024-06-03T08:00:00", "2024-12-03T08:00:00"])
    aware = predict(
        client, [COUNTERS[0]] * 2, ["2024-06-03T08:00:00+02:00", "2024-12-03T07:00:00Z"]
    )
    np.testing.assert_array_equal(counts_of(naive), counts_of(aware))
    assert [p["timestamp"] for p in naive["predictions"]] == [
        "2024-06-03T08:00:00+02:00",
        "2024-12-03T08:00:00+01:00",
    ]
    assert aware["predictions"][1]["timestamp"] == "2024-12-03T07:00:00Z"


def test_timestamp_inside_an_hour_gets_that_hours_count(client: Client) -> None:
    stamps = ["2024-06-03T08:00:00+02:00", "2024-06-03T08:59:59.5+02:00", "2024-06-03T09:00+02:00"]
    body = predict(client, [COUNTERS[1]] * 3, stamps)
    got = counts_of(body)
    assert got[0] == got[1] != got[2]
    # ... which is also what the pipeline says for the instant itself (its features are hourly)
    np.testing.assert_allclose(got, pipeline_counts([COUNTERS[1]] * 3, stamps), rtol=1e-12)
    assert body["predictions"][1]["timestamp"] == "2024-06-03T08:59:59.500000+02:00"


# --- forecast --------------------------------------------------------------------------------
def test_forecast_defaults_to_a_week_from_the_next_full_hour(client: Client) -> None:
    body = client.get("/forecast", params={"counter_id": COUNTERS[3]}).json()
    next_hour = FIXED_NOW.replace(minute=0) + timedelta(hours=1)
    assert body["hours"] == 168
    stamps = [p["timestamp"] for p in body["predictions"]]
    assert len(stamps) == 168
    assert datetime.fromisoformat(stamps[0]) == next_hour == datetime.fromisoformat(body["start"])
    np.testing.assert_allclose(
        counts_of(body), pipeline_counts([COUNTERS[3]] * 168, stamps), rtol=1e-12
    )


def test_forecast_across_a_dst_change_is_hourly(client: Client) -> None:
    # 2024-10-27: Paris clocks go back at 03:00 -> 02:00, the 02:xx hour happens twice
    body = client.get(
        "/forecast",
        params={"counter_id": COUNTERS[0], "start": "2024-10-27T01:30:00", "hours": 4},
    ).json()
    stamps = [p["timestamp"] for p in body["predictions"]]
    assert stamps == [
        "2024-10-27T01:00:00+02:00",
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T03:00:00+01:00",
    ]
    np.testing.assert_allclose(counts_of(body), pipeline_counts([COUNTERS[0]] * 4, stamps))


# --- bad input: always a 4xx JSON naming the problem -------------------------------------------
BAD_PREDICT_BODIES: list[tuple[str, bytes, int, str | None, str]] = [
    ("truncated JSON", b'{"records": [', 400, None, "malformed JSON"),
    ("not UTF-8", b"\xff\xfe{}", 400, None, "malformed JSON"),
    ("empty body", b"", 422, "body", "records"),
    ("array body", b"[]", 422, "body", "object"),
    ("no records", b"{}", 422, "body", "records"),
    ("empty records", b'{"records": []}', 422, "records", "length >= 1"),
    ("records not a list", b'{"records": {"a": 1}}', 422, "records", "array"),
    (
        "counter_id not a string",
        b'{"records": [{"counter_id": 7, "timestamp": "2024-06-03T08:00:00"}]}',
        422,
        "records[0].counter_id",
        "str",
    ),
    (
        "timestamp not a string",
        b'{"records": [{"counter_id": "a", "timestamp": 1717394400}]}',
        422,
        "records[0].timestamp",
        "str",
    ),
    (
        "missing timestamp",
        b'{"records": [{"counter_id": "a"}]}',
        422,
        "records[0]",
        "timestamp",
    ),
    (
        "unknown field",
        b'{"records": [{"counter_id": "a", "timestamp": "2024-06-03T08:00:00", "x": 1}]}',
        422,
        "records[0]",
        "unknown field",
    ),
]


def _records(*stamps: str, counter: str = COUNTERS[0]) -> dict[str, Any]:
    return {"records": [{"counter_id": counter, "timestamp": s} for s in stamps]}


def assert_error(response: Any, status: int, field: str | None, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    assert "Traceback" not in response.text
    assert body.get("field") == field
    for word in words:
        assert word.lower() in body["detail"].lower(), body["detail"]


@pytest.mark.parametrize(
    ("body", "status", "field", "word"),
    [case[1:] for case in BAD_PREDICT_BODIES],
    ids=[case[0] for case in BAD_PREDICT_BODIES],
)
def test_bad_predict_body(
    client: Client, body: bytes, status: int, field: str | None, word: str
) -> None:
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert_error(response, status, field, word)


def test_unparseable_timestamp_names_its_index(client: Client) -> None:
    good = "2024-06-03T08:00:00+02:00"
    response = client.post("/predict", json=_records(good, good, good, "3 June, 8am", good))
    assert_error(response, 422, "records[3].timestamp", "records[3].timestamp", "3 June, 8am")


def test_timestamp_out_of_supported_range(client: Client) -> None:
    response = client.post("/predict", json=_records("2024-06-03T08:00:00", "1900-01-01T00:00:00"))
    assert_error(response, 422, "records[1].timestamp", "1970")


def test_unknown_counters_are_named(client: Client) -> None:
    body = _records("2024-06-03T08:00:00")
    body["records"] += [
        {"counter_id": "nope-1", "timestamp": "2024-06-03T08:00:00"},
        {"counter_id": COUNTERS[1], "timestamp": "2024-06-03T08:00:00"},
        {"counter_id": "nope-2", "timestamp": "2030-06-03T08:00:00"},
    ]
    response = client.post("/predict", json=body)
    assert_error(response, 422, "records[1].counter_id", "nope-1", "nope-2")


def test_too_many_records_is_413(client: Client) -> None:
    response = client.post("/predict", json=_records(*(["2024-06-03T08:00:00"] * 201)))
    assert_error(response, 413, "records", "201", "200")
    ok = client.post("/predict", json=_records(*(["2024-06-03T08:00:00"] * 200)))
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("params", "field", "word"),
    [
        ({}, "counter_id", "counter_id"),
        ({"counter_id": "nope"}, "counter_id", "nope"),
        ({"counter_id": COUNTERS[0], "hours": "0"}, "hours", ">= 1"),
        ({"counter_id": COUNTERS[0], "hours": "745"}, "hours", "<= 744"),
        ({"counter_id": COUNTERS[0], "hours": "a week"}, "hours", "int"),
        ({"counter_id": COUNTERS[0], "start": "tomorrow"}, "start", "tomorrow"),
        ({"counter_id": COUNTERS[0], "start": "2150-01-01T00:00"}, "start", "2100"),
    ],
)
def test_bad_forecast_query(client: Client, params: dict[str, str], field: str, word: str) -> None:
    assert_error(client.get("/forecast", params=params), 422, field, word)


def test_unknown_route_and_wrong_method(client: Client) -> None:
    assert_error(client.get("/predictions"), 404, None, "not found")
    assert_error(client.get("/predict"), 405, None, "method not allowed")


def test_unexpected_exception_is_a_bare_json_500() -> None:
    """The last-resort handler of the app, on a real exception raised by a real route."""

    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    app = Litestar([boom], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as c:
        # (attached after startup: Litestar's logging config replaces the root handlers)
        logging.getLogger("bike_serving").addHandler(handler)
        try:
            response = c.get("/boom")
        finally:
            logging.getLogger("bike_serving").removeHandler(handler)
    assert response.json() == {"status_code": 500, "detail": "internal server error"}
    assert "secret" not in response.text
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in records)


# --- admin auth --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"X-API-Key": "wrong"}, 401),
        ({"X-API-Key": API_KEY + "x"}, 401),
        ({"X-API-Key": "clé-étrangère".encode()}, 401),  # non-ASCII bytes: still a 401
        ({"X-API-Key": API_KEY}, 200),
    ],
)
def test_admin_reload_needs_the_api_key(
    client: Client, headers: dict[str, str], status: int
) -> None:
    response = client.post("/admin/reload", headers=headers)
    if status == 200:
        assert response.json()["result"] == "unchanged"
    else:
        assert_error(response, status, "X-API-Key", "X-API-Key")


def test_admin_disabled_without_api_key(tmp_path: Path) -> None:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path, api_key="") as c:
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "anything"}):
            assert_error(
                c.post("/admin/reload", headers=headers), 403, None, "disabled", "BIKE_API_KEY"
            )


# --- metrics, OpenAPI, timing -----------------------------------------------------------------
def test_metrics_move_with_requests(client: Client) -> None:
    labels = {"method": "POST", "path": "/predict", "app_name": "bike_serving"}
    assert metric(client, "litestar_requests_total", status_code="200", **labels) is None
    for _ in range(3):
        predict(client, [COUNTERS[0]], ["2024-06-03T08:00:00"])
    client.post("/predict", json={"records": []})
    assert metric(client, "litestar_requests_total", status_code="200", **labels) == 3
    assert metric(client, "litestar_requests_total", status_code="422", **labels) == 1
    assert (
        metric(client, "litestar_request_duration_seconds_count", status_code="200", **labels) == 3
    )
    assert metric(client, "bike_predictions_total", source="cache") == 3
    assert metric(client, "bike_model_info", version="1") == 1
    assert metric(client, "bike_model_reloads_total", result="success") == 1
    assert metric(client, "bike_model_reloads_total", result="failed") == 0
    age = metric(client, "bike_model_age_seconds")
    promoted = datetime(2024, 5, 28, 6, tzinfo=UTC).timestamp()
    assert age is not None
    assert age == pytest.approx(datetime.now(UTC).timestamp() - promoted, abs=60)
    assert metric(client, "process_cpu_seconds_total") is not None


def test_two_apps_keep_separate_metrics(client: Client, tmp_path: Path) -> None:
    other_dir = tmp_path / "other"
    publish(other_dir, trained("1"), "1")
    with serving_client(other_dir) as other:
        for _ in range(2):
            predict(client, [COUNTERS[0]], ["2024-06-03T08:00:00"])
        predict(other, [COUNTERS[0]], ["2024-06-03T08:00:00"])
        assert metric(client, "bike_predictions_total", source="cache") == 2
        assert metric(other, "bike_predictions_total", source="cache") == 1
        path = {"path": "/predict", "status_code": "200"}
        assert metric(client, "litestar_requests_total", **path) == 2
        assert metric(other, "litestar_requests_total", **path) == 1


def test_openapi_document_lists_the_api(client: Client) -> None:
    doc = client.get("/schema/openapi.json").json()
    assert {
        "/predict",
        "/forecast",
        "/counters",
        "/champion",
        "/health/live",
        "/health/ready",
        "/admin/reload",
    } <= set(doc["paths"])
    assert "PredictRequest" in doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert set(doc["paths"]["/predict"]["post"]["responses"]) >= {"200", "413", "422", "503"}


def test_server_timing_header(client: Client) -> None:
    response = client.post("/predict", json=_records("2024-06-03T08:00:00"))
    assert response.headers["server-timing"].startswith("app;dur=")
    assert float(response.headers["server-timing"].split("dur=")[1]) > 0


# --- no champion yet -------------------------------------------------------------------------
def test_starting_without_a_champion(tmp_path: Path) -> None:
    with serving_client(tmp_path) as c:
        assert c.get("/health/live").status_code == 200
        for response in (
            c.get("/health/ready"),
            c.post("/predict", json=_records("2024-06-03T08:00:00")),
            c.get("/forecast", params={"counter_id": COUNTERS[0]}),
            c.get("/counters"),
            c.get("/champion"),
        ):
            assert_error(response, 503, None, RETRAIN_COMMAND)
            assert str(tmp_path) not in response.text  # no server path to callers (#13.6)
        assert metric(c, "bike_model_info") is None
        assert metric(c, "bike_model_age_seconds") != metric(c, "bike_model_age_seconds")  # NaN
        assert metric(c, "bike_model_reloads_total", result="failed") == 0  # absent != failed
        assert c.post("/admin/reload", headers={"X-API-Key": API_KEY}).json()["result"] == "absent"

        publish(tmp_path, trained("1"), "1")  # the retrain job promotes a first champion
        reload = c.post("/admin/reload", headers={"X-API-Key": API_KEY}).json()
        assert reload["result"] == "loaded"
        assert reload["model"]["version"] == "1"
        assert c.get("/health/ready").json() == {"status": "ready", "version": "1"}
        assert c.post("/predict", json=_records("2024-06-03T08:00:00")).status_code == 200
