"""BatchMetricsResource against a real HTTP server standing in for the Pushgateway: the wire
format, the grouping keys, the no-op and failure paths. How totals accumulate and decisions are
counted once is tested against the real Pushgateway in test_observability_stack.py."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bike_assets.resources.batch_metrics import METRICS, STEPS, BatchMetricsResource

try:
    from bike_assets_tests.local_http import LocalHTTPServer, RecordedRequest, free_port
except ImportError:  # pytest's rootdir import mode puts this directory on sys.path instead
    from local_http import LocalHTTPServer, RecordedRequest, free_port  # type: ignore[no-redef]


@pytest.fixture
def gateway() -> Iterator[LocalHTTPServer]:
    # The Pushgateway answers 200 to POST; GET /metrics here holds no sample (an empty gateway).
    with LocalHTTPServer(status=200) as server:
        yield server


def samples(request: RecordedRequest) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}, comments left out."""
    out: dict[str, float] = {}
    for line in request.text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def types(request: RecordedRequest) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", request.text(), flags=re.MULTILINE))


def pushes(server: LocalHTTPServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.method != "GET"]


def test_catalogue_names_are_unique_and_prometheus_conventional() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for metric in METRICS:
        assert metric.step in STEPS
        assert metric.name.startswith("bike_")
        assert metric.name.endswith("_total") == (metric.kind == "counter"), metric.name
        if metric.name.endswith("_timestamp_seconds"):
            assert metric.kind == "gauge"


def test_push_drift_gauges_in_the_monitoring_group(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url, job="bike_traffic")
    before = time.time()
    # the drift measure's own per-column dicts, or plain scores; NaN is left out
    columns: dict[str, Any] = {"count": {"score": 0.01, "drifted": True}, "hour": 0.4}
    columns["bad"] = math.nan
    assert metrics.push_drift(0.6667, True, columns=columns) is True

    (request,) = gateway.requests  # gauges only: no read-back
    assert request.method == "POST"  # pushadd: replaces only these names in the group
    assert request.path == "/metrics/job/bike_traffic_monitoring"
    assert request.headers["content-type"].startswith("text/plain")
    pushed = samples(request)
    success = pushed.pop("bike_monitoring_last_success_timestamp_seconds")
    assert before <= success <= time.time()
    assert pushed == {
        "bike_drift_share": 0.6667,
        "bike_drift_detected": 1.0,
        'bike_drift_column_score{column="count"}': 0.01,
        'bike_drift_column_score{column="hour"}': 0.4,
    }
    assert set(types(request).values()) == {"gauge"}


def test_push_health_gauges(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_health(0.71, 42.5, mae=20.0) is True
    assert gateway.requests[0].path == "/metrics/job/bike_traffic_monitoring"
    pushed = samples(gateway.requests[0])
    assert "bike_monitoring_last_success_timestamp_seconds" in pushed
    assert {k: v for k, v in pushed.items() if "champion" in k} == {
        "bike_model_r2_champion_current": 0.71,
        "bike_model_rmse_champion_current": 42.5,
        "bike_model_mae_champion_current": 20.0,
    }


def test_unmeasured_values_are_not_pushed(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_drift(None, False) is False
    assert metrics.push_drift(math.nan, False) is False
    assert metrics.push_health(None, None) is False
    assert gateway.requests == []
    assert metrics.push_health(None, 55.0) is True
    pushed = samples(gateway.requests[0])
    assert pushed["bike_model_rmse_champion_current"] == 55.0
    assert "bike_model_r2_champion_current" not in pushed


def test_counters_read_the_totals_back_then_push_every_known_outcome(
    gateway: LocalHTTPServer,
) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url, job="bike")
    assert metrics.push_training("success", run_id="run-1") is True

    read, push = gateway.requests
    assert (read.method, read.path) == ("GET", "/metrics")  # the current totals, first
    assert (push.method, push.path) == ("POST", "/metrics/job/bike_training")  # no run_id group
    pushed = samples(push)
    assert pushed['bike_training_runs_total{status="success"}'] == 1.0
    assert (
        pushed['bike_training_runs_total{status="failed"}'] == 0.0
    )  # increase() sees a first failure
    assert "bike_training_last_success_timestamp_seconds" in pushed
    assert types(push)["bike_training_runs_total"] == "counter"
    # no `_created` samples: the gateway would keep a meaningless timestamp
    assert "_created" not in push.text()


def test_a_failed_training_does_not_move_the_last_success(gateway: LocalHTTPServer) -> None:
    assert BatchMetricsResource(pushgateway_url=gateway.url).push_training("failed") is True
    pushed = samples(pushes(gateway)[0])
    assert pushed['bike_training_runs_total{status="failed"}'] == 1.0
    assert "bike_training_last_success_timestamp_seconds" not in pushed


def test_ingestion_pushes_rows_of_the_run_and_the_total(gateway: LocalHTTPServer) -> None:
    assert BatchMetricsResource(pushgateway_url=gateway.url).push_ingested(2400) is True
    (push,) = pushes(gateway)
    assert push.path == "/metrics/job/bike_traffic_ingestion"
    pushed = samples(push)
    assert pushed["bike_records_ingested_total"] == 2400.0
    assert pushed["bike_records_ingested_last_run"] == 2400.0
    assert "bike_ingestion_last_success_timestamp_seconds" in pushed


def test_evaluation_pushes_scores_decision_and_counts_it(gateway: LocalHTTPServer) -> None:
    scores = {
        "test_current": {
            "challenger": {"r2": 0.61, "rmse": 40.0, "mae": 22.0},
            "naive": {"r2": 0.66, "rmse": 35.0, "mae": 20.0},
        }
    }
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_evaluation(scores, "REJECT", "naive gate!", run_id="r-9") is True
    (push,) = pushes(gateway)
    assert push.path == "/metrics/job/bike_traffic_evaluation"
    pushed = samples(push)
    assert pushed['bike_model_evaluation_r2{model="challenger",split="test_current"}'] == 0.61
    assert pushed['bike_model_evaluation_mae{model="naive",split="test_current"}'] == 20.0
    assert pushed['bike_model_deployments_total{decision="REJECT"}'] == 1.0
    assert pushed['bike_model_deployments_total{decision="DEPLOY"}'] == 0.0
    # label values are bounded to a safe alphabet (free text would make new series)
    key = 'bike_model_last_decision{decision="REJECT",reason="naive_gate_",run_id="r-9"}'
    assert pushed[key] == 1.0


def test_unknown_retrain_level_and_negative_rows_are_refused(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_ingested(-1) is False
    assert metrics.push_retrain_decision("P9") is False
    assert gateway.requests == []


def test_gateway_without_scheme(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=f"127.0.0.1:{gateway.port}")
    assert metrics.push_health(0.5, 60.0) is True
    assert metrics.push_retrain_decision("P4") is True  # read-back + push
    assert [r.method for r in gateway.requests] == ["POST", "GET", "POST"]


def test_http_error_returns_false(
    gateway: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.status = 500
    with caplog.at_level(logging.WARNING):
        assert BatchMetricsResource(pushgateway_url=gateway.url).push_training("failed") is False
        assert BatchMetricsResource(pushgateway_url=gateway.url).push_health(0.5, 1.0) is False
    assert "totals not read" in caplog.text  # a counter is not pushed without its total
    assert "not pushed" in caplog.text
    assert [r.method for r in gateway.requests] == ["GET", "POST"]


def test_unreachable_gateway_returns_false_without_leaking_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://user:s3cret@127.0.0.1:{free_port()}"
    metrics = BatchMetricsResource(pushgateway_url=url, timeout_s=2.0)
    with caplog.at_level(logging.WARNING):
        assert metrics.push_drift(0.2, False) is False
        assert metrics.push_deployment("DEPLOY", run_id="r") is False
    assert "not pushed" in caplog.text
    assert "s3cret" not in caplog.text


def test_no_url_is_a_no_op(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url="")
    assert metrics.push_drift(0.5, True) is False
    assert metrics.push_health(0.8, 30.0) is False
    assert metrics.push_training("success", run_id="r") is False
    assert metrics.push_deployment("DEPLOY") is False
    assert metrics.push_evaluation({}, "SKIP") is False
    assert metrics.push_ingested(10) is False
    assert metrics.push_retrain_decision("P1") is False
    assert gateway.requests == []
