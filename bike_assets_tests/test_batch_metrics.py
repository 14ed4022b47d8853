"""BatchMetricsResource against a real HTTP server standing in for the Pushgateway."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

import pytest

from bike_assets.resources.batch_metrics import BatchMetricsResource

try:
    from bike_assets_tests.local_http import LocalHTTPServer, RecordedRequest, free_port
except ImportError:  # pytest's rootdir import mode puts this directory on sys.path instead
    from local_http import LocalHTTPServer, RecordedRequest, free_port  # type: ignore[no-redef]


@pytest.fixture
def gateway() -> Iterator[LocalHTTPServer]:
    with LocalHTTPServer(status=200) as server:  # the Pushgateway answers 200 to POST
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


def test_push_drift_gauges(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url, job="bike_traffic")
    assert metrics.push_drift(0.6667, True) is True

    (request,) = gateway.requests
    assert request.method == "POST"  # pushadd: replaces only these names in the group
    assert request.path == "/metrics/job/bike_traffic"
    assert request.headers["content-type"].startswith("text/plain")
    assert samples(request) == {"bike_drift_share": 0.6667, "bike_drift_detected": 1.0}
    assert types(request) == {"bike_drift_share": "gauge", "bike_drift_detected": "gauge"}


def test_push_health_gauges(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_health(0.71, 42.5) is True
    assert gateway.requests[0].path == "/metrics/job/bike_traffic"
    assert samples(gateway.requests[0]) == {
        "bike_model_r2_champion_current": 0.71,
        "bike_model_rmse_champion_current": 42.5,
    }


def test_unmeasured_values_are_not_pushed(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_drift(None, False) is False
    assert metrics.push_drift(math.nan, False) is False
    assert metrics.push_health(None, None) is False
    assert gateway.requests == []
    assert metrics.push_health(None, 55.0) is True
    assert samples(gateway.requests[0]) == {"bike_model_rmse_champion_current": 55.0}


def test_counters_go_to_a_group_per_run(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url, job="bike")
    assert metrics.push_training("success", run_id="run-1") is True
    assert metrics.push_deployment("DEPLOY", run_id="run-1") is True
    assert metrics.push_ingested(2400, run_id="run-2") is True

    training, deployment, ingested = gateway.requests
    assert training.method == deployment.method == ingested.method == "POST"
    assert training.path == "/metrics/job/bike/run_id/run-1"
    assert samples(training) == {'bike_training_runs_total{status="success"}': 1.0}
    assert types(training) == {"bike_training_runs_total": "counter"}
    assert deployment.path == "/metrics/job/bike/run_id/run-1"
    assert samples(deployment) == {'bike_model_deployments_total{decision="DEPLOY"}': 1.0}
    assert ingested.path == "/metrics/job/bike/run_id/run-2"
    assert samples(ingested) == {"bike_records_ingested_total": 2400.0}
    # no `_created` samples: the gateway would keep a meaningless timestamp per run
    assert all("_created" not in r.text() for r in gateway.requests)


def test_counter_without_run_id_gets_its_own_group(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=gateway.url)
    assert metrics.push_deployment("REJECT") is True
    assert metrics.push_deployment("REJECT") is True
    first, second = (r.path for r in gateway.requests)
    assert first.startswith("/metrics/job/bike_traffic/run_id/adhoc-")
    assert first != second  # two events, two groups: the sum over groups counts both


def test_negative_rows_are_refused(gateway: LocalHTTPServer) -> None:
    assert BatchMetricsResource(pushgateway_url=gateway.url).push_ingested(-1) is False
    assert gateway.requests == []


def test_gateway_without_scheme(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url=f"127.0.0.1:{gateway.port}")
    assert metrics.push_health(0.5, 60.0) is True
    assert len(gateway.requests) == 1


def test_http_error_returns_false(
    gateway: LocalHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.status = 500
    with caplog.at_level(logging.WARNING):
        assert BatchMetricsResource(pushgateway_url=gateway.url).push_training("failed") is False
    assert "not pushed" in caplog.text
    assert len(gateway.requests) == 1


def test_unreachable_gateway_returns_false_without_leaking_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://user:s3cret@127.0.0.1:{free_port()}"
    metrics = BatchMetricsResource(pushgateway_url=url, timeout_s=2.0)
    with caplog.at_level(logging.WARNING):
        assert metrics.push_drift(0.2, False) is False
    assert "not pushed" in caplog.text
    assert "s3cret" not in caplog.text


def test_no_url_is_a_no_op(gateway: LocalHTTPServer) -> None:
    metrics = BatchMetricsResource(pushgateway_url="")
    assert metrics.push_drift(0.5, True) is False
    assert metrics.push_health(0.8, 30.0) is False
    assert metrics.push_training("success", run_id="r") is False
    assert metrics.push_deployment("DEPLOY") is False
    assert metrics.push_ingested(10) is False
    assert gateway.requests == []
