"""Dashboards, alert rules, Alertmanager and the compose services of the observability stack,
checked without starting them: what every panel and rule queries is exported by the code, the
thresholds are the platform's, the provisioning points at what compose mounts; and promtool's
own checks and rule unit tests (real binary, `stack` marker). The processes themselves run in
test_observability_stack.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bike_assets.settings import Thresholds
from bike_assets_tests.obs_stack import (
    ALERTMANAGER_CONFIG,
    DEPLOY,
    PROMETHEUS_CONFIG,
    ROOT,
    RULE_TESTS,
    RULES,
    dashboards,
    exported_names,
    metric_names,
    panel_queries,
    panels,
    render_alertmanager,
    rules,
    substitute,
    version_of,
)
from bike_assets_tests.serving_fixtures import publish, serving_client, trained
from bike_assets_tests.stack import require_binary

GRAFANA = DEPLOY / "grafana"
EXPECTED_DASHBOARDS = {
    "overview.json",
    "model_performance.json",
    "drift.json",
    "training_deployment.json",
}
EXPECTED_ALERTS = {
    "BikeChampionR2BelowCritical",
    "BikeDriftShareAboveCritical",
    "BikeIngestionStale",
    "BikeApiDown",
    "BikeApi5xxRatioHigh",
    "BikeChampionTooOld",
    "BikeRetrainRunsFailing",
}


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """`source:target[:mode]` volumes -> {source: target}."""
    pairs = (str(volume).split(":") for volume in service["volumes"])
    return {parts[0]: parts[1] for parts in pairs if len(parts) >= 2}


def _documented() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))


@pytest.fixture(scope="module")
def serving_metrics_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of the real app after a 200 and a 4xx: the HTTP histograms and counters exist."""
    data_dir = tmp_path_factory.mktemp("serving")
    publish(data_dir, trained("1"), "1")
    with serving_client(data_dir) as client:
        assert client.get("/counters").status_code == 200
        bad = client.post("/predict", json={"records": [{"counter_id": "x", "timestamp": "no"}]})
        assert 400 <= bad.status_code < 500
        text: str = client.get("/metrics").text
        return text


# -- every query names exported metrics only ----------------------------------------------------
def test_the_four_dashboards_are_there() -> None:
    assert set(dashboards()) == EXPECTED_DASHBOARDS


def test_the_metric_name_lexer_finds_names_not_labels_or_functions() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le) (rate(litestar_request_duration_seconds_bucket{"
        'app_name="bike_serving", path=~"/p.*"}[5m]))) / on (job) group_left up'
        " or vector(0) and time() - bike_x_timestamp_seconds offset 1h > 14 * 86400"
    )
    assert metric_names(expr) == {
        "litestar_request_duration_seconds_bucket",
        "up",
        "bike_x_timestamp_seconds",
    }


def test_every_panel_query_names_only_exported_metrics(serving_metrics_text: str) -> None:
    exported = exported_names(serving_metrics_text)
    queries = panel_queries()
    assert len(queries) >= 25
    for where, expr in queries:
        names = metric_names(substitute(expr))
        assert names, f"{where}: names no metric"
        assert names <= exported, f"{where}: {sorted(names - exported)} is exported by nothing"


def test_every_alert_rule_names_only_exported_metrics(serving_metrics_text: str) -> None:
    exported = exported_names(serving_metrics_text)
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)}"


def test_the_issue_alerts_exist_with_severity_and_summary() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    assert set(by_name) >= EXPECTED_ALERTS
    for name, rule in by_name.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name


# -- thresholds are the platform's --------------------------------------------------------------
def _numbers(expr: str) -> set[float]:
    return {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", expr)}


def test_alert_thresholds_are_the_settings_defaults() -> None:
    defaults = Thresholds()
    by_name = {rule["alert"]: rule["expr"] for rule in rules()}
    assert defaults.r2_critical in _numbers(by_name["BikeChampionR2BelowCritical"])
    assert defaults.drift_critical in _numbers(by_name["BikeDriftShareAboveCritical"])
    # the matrix's P2 rule is `share >= DRIFT_CRITICAL`: the alert fires on equality too
    assert ">=" in by_name["BikeDriftShareAboveCritical"]
    assert {26.0, 3600.0} <= _numbers(by_name["BikeIngestionStale"])
    assert {14.0, 86400.0} <= _numbers(by_name["BikeChampionTooOld"])
    assert 0.01 in _numbers(by_name["BikeApi5xxRatioHigh"])


def _panel(dashboard: str, title: str) -> dict[str, Any]:
    (found,) = [p for p in panels(dashboards()[dashboard]) if p["title"] == title]
    return found


def _threshold_values(panel: dict[str, Any]) -> set[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return {float(step["value"]) for step in steps if step["value"] is not None}


def test_dashboards_draw_the_settings_thresholds() -> None:
    d = Thresholds()
    r2 = _panel("model_performance.json", "Champion R² (last 7 days)")
    assert _threshold_values(r2) == {d.r2_critical, d.r2_warning}
    assert r2["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    rmse = _panel("model_performance.json", "Champion RMSE and MAE (last 7 days)")
    assert _threshold_values(rmse) == {d.rmse_threshold}
    share = _panel("drift.json", "Drift share")
    assert _threshold_values(share) == {d.drift_warning, d.drift_critical}
    assert share["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


# -- Grafana JSON and provisioning --------------------------------------------------------------
def test_dashboards_are_valid_grafana_json_on_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = set()
    for name, dashboard in dashboards().items():
        assert dashboard["uid"] not in uids, name
        uids.add(dashboard["uid"])
        assert dashboard["title"] and dashboard["schemaVersion"] >= 36
        (variable,) = dashboard["templating"]["list"]
        assert (variable["name"], variable["type"], variable["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
        assert variable["current"]["value"] == datasource["uid"]
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            where = f"{name}: {panel['title']}"
            assert panel["type"] in ("stat", "timeseries", "bargauge", "table", "gauge"), where
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["description"], where
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target["expr"].strip(), where


def test_provisioning_points_at_what_compose_mounts() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = _mounts(grafana)
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "bike.yml").read_text()
    )["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert provider["folder"]
    (datasource,) = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in _compose()["services"]


# -- compose -------------------------------------------------------------------------------------
def test_compose_grafana_is_provisioned_with_the_password_from_env() -> None:
    grafana = _compose()["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana")
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert "GRAFANA_ADMIN_PASSWORD" in _documented()
    assert all(p.startswith("127.0.0.1:") for p in grafana["ports"])
    assert "/api/health" in " ".join(grafana["healthcheck"]["test"])


def test_compose_alertmanager_gets_the_webhook_as_a_secret_file() -> None:
    compose = _compose()
    alertmanager = compose["services"]["alertmanager"]
    assert any("deploy/alertmanager" in str(v) for v in alertmanager["volumes"])
    (secret,) = alertmanager["secrets"]
    assert compose["secrets"][secret]["environment"] == "ALERTMANAGER_DISCORD_WEBHOOK_URL"
    assert "ALERTMANAGER_DISCORD_WEBHOOK_URL" in _documented()
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    files = [d["webhook_url_file"] for r in config["receivers"] for d in r["discord_configs"]]
    assert files == [f"/run/secrets/{secret}"]
    assert "-/healthy" in " ".join(alertmanager["healthcheck"]["test"])


def test_compose_prometheus_loads_the_rules_and_every_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    prometheus = services["prometheus"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    # rule_files are relative to the config file; compose mounts deploy/prometheus beside it
    assert config["rule_files"] == ["prometheus/rules/*.yml"]
    assert "./deploy/prometheus:/etc/prometheus/prometheus:ro" in prometheus["volumes"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    for name in ("prometheus", "pushgateway", "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_k8s_configmap_names_the_pushgateway() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "configmap.yaml").read_text()))
    (config,) = [d for d in docs if d["metadata"]["name"] == "bike-traffic-config"]
    assert config["data"]["PROMETHEUS_PUSHGATEWAY_URL"].startswith("http://")


# -- Alertmanager config --------------------------------------------------------------------------
def test_alertmanager_routes_everything_to_discord_with_grouping_and_repeat() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    route = config["route"]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert route["receiver"] in receivers
    assert all(sub["receiver"] in receivers for sub in route.get("routes", []))
    assert "alertname" in route["group_by"]
    assert route["repeat_interval"] and route["group_interval"] and route["group_wait"]
    for discord in receivers[route["receiver"]]["discord_configs"]:
        assert "webhook_url" not in discord  # a secret: only ever from a file
        assert discord["webhook_url_file"].startswith("/")


# -- promtool and amtool (the real binaries) -------------------------------------------------------
def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.stack
def test_promtool_check_config_with_the_rules() -> None:
    result = _run([require_binary("promtool"), "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


@pytest.mark.stack
def test_promtool_check_rules() -> None:
    files = sorted(str(p) for p in RULES.glob("*.yml"))
    assert files
    result = _run([require_binary("promtool"), "check", "rules", *files])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.stack
def test_promtool_test_rules_covers_every_alert() -> None:
    tests = sorted(RULE_TESTS.glob("*.test.yml"))
    tested_files: set[Path] = set()
    tested_alerts: set[str] = set()
    for path in tests:
        spec = yaml.safe_load(path.read_text())
        tested_files |= {(path.parent / f).resolve() for f in spec["rule_files"]}
        for case in spec["tests"]:
            tested_alerts |= {t["alertname"] for t in case.get("alert_rule_test", [])}
    assert tested_files == {p.resolve() for p in RULES.glob("*.yml")}
    fired = {
        t["alertname"]
        for path in tests
        for case in yaml.safe_load(path.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in rules()}  # every alert is shown firing
    result = _run([require_binary("promtool"), "test", "rules", *map(str, tests)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.stack
def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    binary = require_binary("alertmanager")
    rendered = render_alertmanager(
        "https://discord.invalid/api/webhooks/1/x", tmp_path, version_of(binary)
    )
    result = _run([require_binary("amtool"), "check-config", str(rendered)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 receivers" in result.stdout
