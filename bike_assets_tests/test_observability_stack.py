"""The observability stack with real processes: Pushgateway, Prometheus (the project's config and
alert rules, targets rewritten to local ports, 1 s intervals), Alertmanager (the project's
config, its Discord receiver pointed at a local stand-in) and the forecast API (uvicorn serving a
small trained champion).

* `BatchMetricsResource` against the real Pushgateway: totals only grow, decisions are counted
  once per run, one group per pipeline step.
* Every dashboard panel's query, evaluated by Prometheus after a real `ingest_job` run and the
  resource's pushes, parses and returns at least one series.
* A champion R2 pushed below R2_CRITICAL reaches Discord (the stand-in) through Alertmanager.

Marked `stack`: skipped without the binaries, failed instead under BIKE_REQUIRE_STACK=1 (CI).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets_tests.conftest import Platform, env_without_platform_vars
from bike_assets_tests.local_http import LocalHTTPServer, free_port
from bike_assets_tests.obs_stack import (
    ROOT,
    Service,
    leftovers,
    panel_queries,
    python_module,
    query,
    render_alertmanager,
    render_prometheus,
    running,
    substitute,
    version_of,
)
from bike_assets_tests.serving_fixtures import COUNTERS, publish, trained
from bike_assets_tests.stack import require_binary
from bike_assets_tests.stack_harness import wait_for

pytestmark = pytest.mark.stack

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _local(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _assert_all_stopped(services: list[Service], marker: str) -> None:
    for service in services:
        assert service.process.poll() is not None, f"{service.name} still running"
    assert not leftovers(marker), leftovers(marker)


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Service]:
    binary = require_binary("pushgateway")
    port = free_port()
    argv = [
        binary,
        f"--web.listen-address=127.0.0.1:{port}",
        f"--persistence.file={tmp_path / 'pushgateway.store'}",  # as in compose
    ]
    with running("pushgateway", argv, _local(port), "/-/ready", tmp_path) as service:
        yield service
    _assert_all_stopped([service], str(tmp_path))


def gateway_samples(url: str) -> Samples:
    """Every bike_* sample the gateway exposes, keyed by name and labels (job included)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("bike_"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "instance"))
                out[(sample.name, labels)] = float(sample.value)
    return out


# -- the resource against the real Pushgateway --------------------------------------------------
def test_totals_only_grow_and_live_in_one_group_per_step(pushgateway: Service) -> None:
    metrics = BatchMetricsResource(pushgateway_url=pushgateway.url)
    assert metrics.push_ingested(2400, run_id="a")
    assert metrics.push_ingested(100, run_id="b")
    assert metrics.push_training("success", run_id="a")
    assert metrics.push_training("failed", run_id="b")
    assert metrics.push_training("success", run_id="c")
    assert metrics.push_retrain_decision("P3")
    assert metrics.push_retrain_decision("P3")
    # gauges of the same group pushed in between do not wipe the totals (POST, not PUT)
    assert metrics.push_health(0.7, 30.0, mae=18.0)
    assert metrics.push_drift(0.35, True)

    got = gateway_samples(pushgateway.url)
    ingestion = (("job", "bike_traffic_ingestion"),)
    assert got[("bike_records_ingested_total", ingestion)] == 2500
    assert got[("bike_records_ingested_last_run", ingestion)] == 100
    training = "bike_traffic_training"
    runs = {k[1]: v for k, v in got.items() if k[0] == "bike_training_runs_total"}
    assert runs == {
        (("job", training), ("status", "failed")): 1,
        (("job", training), ("status", "success")): 2,
    }
    monitoring = "bike_traffic_monitoring"
    assert got[("bike_retrain_decisions_total", (("job", monitoring), ("level", "P3")))] == 2
    assert got[("bike_retrain_decisions_total", (("job", monitoring), ("level", "P1")))] == 0
    assert got[("bike_retrain_decision_level", (("job", monitoring),))] == 3
    assert got[("bike_model_r2_champion_current", (("job", monitoring),))] == 0.7

    groups = requests.get(f"{pushgateway.url}/api/v1/metrics", timeout=5).json()["data"]
    jobs = sorted(group["labels"]["job"] for group in groups)
    # one group per step, never one per run (no run_id grouping key)
    assert jobs == sorted(f"bike_traffic_{s}" for s in ("ingestion", "training", "monitoring"))
    assert all(set(group["labels"]) == {"job"} for group in groups)


def test_every_decision_is_counted_once_including_a_naive_gate_reject(
    pushgateway: Service,
) -> None:
    metrics = BatchMetricsResource(pushgateway_url=pushgateway.url)
    scores = {"test_current": {"challenger": {"r2": 0.5}, "naive": {"r2": 0.6}}}
    # run-1: DEPLOY, pushed by the evaluation then by the champion step: counted once
    assert metrics.push_evaluation(scores, "DEPLOY", "no_champion", run_id="run-1")
    before_promotion = time.time()
    assert metrics.push_deployment("DEPLOY", run_id="run-1")
    # run-2: the naive gate REJECTs; the blocking check stops the run before `champion`
    assert metrics.push_evaluation(scores, "REJECT", "naive_gate", run_id="run-2")
    # run-3: SKIP, then promoted anyway with force=true: SKIP and FORCE
    assert metrics.push_evaluation(scores, "SKIP", "below_gain", run_id="run-3")
    assert metrics.push_deployment("DEPLOY", run_id="run-3")
    # run-4: a champion step whose evaluation pushed nothing still counts its decision
    assert metrics.push_deployment("SKIP", run_id="run-4")
    # a rollback job
    assert metrics.push_deployment("ROLLBACK", run_id="run-5")

    got = gateway_samples(pushgateway.url)
    job = ("job", "bike_traffic_evaluation")
    decisions = {
        dict(labels)["decision"]: value
        for (name, labels), value in got.items()
        if name == "bike_model_deployments_total"
    }
    assert decisions == {"DEPLOY": 1, "REJECT": 1, "SKIP": 2, "FORCE": 1, "ROLLBACK": 1}
    promoted = got[("bike_model_last_promotion_timestamp_seconds", (job,))]
    assert before_promotion <= promoted <= time.time()
    last = [labels for (name, labels), _ in got.items() if name == "bike_model_last_decision"]
    assert last == [(("decision", "SKIP"), job, ("reason", "below_gain"), ("run_id", "run-3"))]


def test_counters_are_not_pushed_when_the_totals_cannot_be_read(pushgateway: Service) -> None:
    metrics = BatchMetricsResource(pushgateway_url=pushgateway.url)
    assert metrics.push_training("success")
    pushgateway.process.terminate()
    pushgateway.process.wait(timeout=10)
    # a total restarting from 1 would be a lie: nothing is pushed, False is returned
    assert metrics.push_training("success") is False


# -- the whole stack ----------------------------------------------------------------------------
@dataclass
class Stack:
    prometheus: Service
    pushgateway: Service
    alertmanager: Service
    api: Service
    discord: LocalHTTPServer


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    binaries = {
        name: require_binary(name) for name in ("prometheus", "pushgateway", "alertmanager")
    }
    ports = {name: free_port() for name in ("prometheus", "pushgateway", "alertmanager", "api")}
    services: list[Service] = []
    with ExitStack() as stack:
        discord = stack.enter_context(LocalHTTPServer(status=204))  # Discord answers 204

        def start(name: str, argv: list[str], ready: str, **kw: Any) -> Service:
            service = stack.enter_context(
                running(name, argv, _local(ports[name]), ready, tmp_path, **kw)
            )
            services.append(service)
            return service

        pushgateway = start(
            "pushgateway",
            [
                binaries["pushgateway"],
                f"--web.listen-address=127.0.0.1:{ports['pushgateway']}",
                f"--persistence.file={tmp_path / 'pushgateway.store'}",
            ],
            "/-/ready",
        )
        am_dir = tmp_path / "alertmanager"
        am_dir.mkdir()
        am_config = render_alertmanager(
            f"{discord.url}/api/webhooks/1/stand-in", am_dir, version_of(binaries["alertmanager"])
        )
        alertmanager = start(
            "alertmanager",
            [
                binaries["alertmanager"],
                f"--config.file={am_config}",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                "--cluster.listen-address=",
            ],
            "/-/ready",
        )
        # The API serves a small trained champion from its own data folder.
        api_data = tmp_path / "api_data"
        publish(api_data, trained("1"), "1")
        api_env = env_without_platform_vars() | {
            "BIKE_DATA_DIR": str(api_data),
            "BIKE_FORECAST_CACHE_DAYS": "1",
        }
        api = start(
            "api",
            [
                *python_module("uvicorn"),
                "bike_serving.app:app",
                "--host=127.0.0.1",
                f"--port={ports['api']}",
                f"--app-dir={ROOT}",
            ],
            "/health/ready",
            env=api_env,
        )
        local = {k: f"127.0.0.1:{v}" for k, v in ports.items()}
        config = render_prometheus(
            {
                "api:8000": local["api"],
                "pushgateway:9091": local["pushgateway"],
                "alertmanager:9093": local["alertmanager"],
                "localhost:9090": local["prometheus"],
            },
            tmp_path / "prometheus.yml",
        )
        prometheus = start(
            "prometheus",
            [
                binaries["prometheus"],
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={local['prometheus']}",
            ],
            "/-/ready",
        )
        yield Stack(prometheus, pushgateway, alertmanager, api, discord)
    _assert_all_stopped(services, str(tmp_path))


def _send_api_traffic(api: str) -> None:
    counter = COUNTERS[0]
    assert requests.get(f"{api}/counters", timeout=30).status_code == 200
    forecast = requests.get(
        f"{api}/forecast", params={"counter_id": counter, "hours": "24"}, timeout=30
    )
    assert forecast.status_code == 200
    good = {"records": [{"counter_id": counter, "timestamp": "2024-06-03T08:00:00"}]}
    assert requests.post(f"{api}/predict", json=good, timeout=30).status_code == 200
    unknown = {"records": [{"counter_id": "no-such-counter", "timestamp": "2024-06-03T08:00:00"}]}
    assert requests.post(f"{api}/predict", json=unknown, timeout=30).status_code == 422


def _push_batch_metrics(metrics: BatchMetricsResource, platform: Platform) -> None:
    # A real ingest_job run: raw_counts pushes rows and its last success through the resource
    # that the factory configured from PROMETHEUS_PUSHGATEWAY_URL.
    assert platform.ingest(date(2024, 6, 1), date(2024, 6, 2)).success
    # The steps whose runs take a minute (retrain) or whose call sites are being rewritten
    # (evaluation, champion), pushed through the same resource methods those steps call.
    assert metrics.push_training("success", run_id="run-1")
    scores = {
        split: {
            "challenger": {"r2": 0.74, "rmse": 31.0, "mae": 17.0},
            "champion": {"r2": 0.70, "rmse": 34.0, "mae": 19.0},
            "naive": {"r2": 0.58, "rmse": 42.0, "mae": 24.0},
        }
        for split in ("test_baseline", "test_current")
    }
    assert metrics.push_evaluation(scores, "DEPLOY", "gain", run_id="run-1")
    assert metrics.push_deployment("DEPLOY", run_id="run-1")
    assert metrics.push_health(0.71, 35.0, mae=20.0)
    columns = {"counter_id": 0.4, "hour": 0.9, "count": 0.01, "rel_weekday_peak": 0.2}
    assert metrics.push_drift(0.22, False, columns=columns)
    assert metrics.push_retrain_decision("P4")


def _scraped_twice(prometheus: str, name: str) -> Callable[[], list[Any]]:
    """A check: every series of `name` has at least two samples in the last minute."""
    return lambda: list(
        query(prometheus, f"min(count_over_time({name}[1m])) >= 2")["data"]["result"]
    )


def _rule(prometheus: str, alertname: str) -> dict[str, Any]:
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r["name"] == alertname]
    return dict(rule)


def _firing(prometheus: str, alertname: str) -> list[dict[str, Any]]:
    alerts = requests.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def _discord_messages(discord: LocalHTTPServer, alertname: str) -> list[dict[str, Any]]:
    out = []
    for request in discord.requests:
        body = request.json()
        if any(alertname in embed.get("title", "") for embed in body.get("embeds", [])):
            out.append(body)
    return out


@pytest.fixture
def stack_env(stack: Stack, platform_env: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The stack, with the platform's settings pointing at its Pushgateway (before `platform`
    builds the definitions: list this fixture first)."""
    monkeypatch.setenv("PROMETHEUS_PUSHGATEWAY_URL", stack.pushgateway.url)
    return stack


def test_every_panel_shows_data_and_a_low_r2_reaches_discord(
    stack_env: Stack, platform: Platform
) -> None:
    stack = stack_env
    started = time.monotonic()
    metrics = BatchMetricsResource(pushgateway_url=stack.pushgateway.url)
    _push_batch_metrics(metrics, platform)
    _send_api_traffic(stack.api.url)

    prometheus = stack.prometheus.url
    queries = [(where, substitute(expr)) for where, expr in panel_queries()]

    # rate() and increase() need two samples: wait until Prometheus scraped the API traffic and
    # the last pushed metrics at least twice, then every query must return a series.
    for scraped in ("litestar_requests_total", "bike_retrain_decisions_total"):
        wait_for(f"two scrapes of {scraped}", _scraped_twice(prometheus, scraped), 60, poll_s=0.25)
    for where, promql in queries:
        answer = query(prometheus, promql)
        assert answer["status"] == "success", f"{where}: {answer}"
        assert answer["data"]["result"], f"{where}: no series for {promql}"
    # the real ingest run pushed through the configured resource
    rows = query(prometheus, "bike_records_ingested_last_run")["data"]["result"]
    assert float(rows[0]["value"][1]) > 0

    # A healthy champion fires nothing (the rule was evaluated on it); then R2 drops below
    # R2_CRITICAL.
    rule = _rule(prometheus, "BikeChampionR2BelowCritical")
    assert (rule["health"], rule["state"]) == ("ok", "inactive"), rule
    assert metrics.push_health(0.2, 120.0, mae=80.0)
    wait_for(
        "BikeChampionR2BelowCritical to fire in Prometheus",
        lambda: _firing(prometheus, "BikeChampionR2BelowCritical"),
        30,
        poll_s=0.25,
    )
    (message,) = wait_for(
        "a Discord message for BikeChampionR2BelowCritical",
        lambda: _discord_messages(stack.discord, "BikeChampionR2BelowCritical"),
        40,
        poll_s=0.25,
    )
    (embed,) = message["embeds"]
    assert embed["title"].startswith("[FIRING:1] BikeChampionR2BelowCritical")
    assert "0.200" in embed["description"]  # the rule's summary, rendered by the template
    in_alertmanager = requests.get(f"{stack.alertmanager.url}/api/v2/alerts", timeout=5).json()
    (alert,) = [
        a for a in in_alertmanager if a["labels"]["alertname"] == "BikeChampionR2BelowCritical"
    ]
    assert alert["labels"]["severity"] == "critical"
    assert time.monotonic() - started < 90
