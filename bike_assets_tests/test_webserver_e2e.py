"""End to end through dagster-webserver's GraphQL API: the code location as a user's UI sees it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bike_assets_tests.conftest import dagster_home_without_daemon, env_without_platform_vars
from bike_assets_tests.local_http import free_port

pytestmark = pytest.mark.e2e

EXPECTED_ASSETS = {
    "raw_counts",
    "counters",
    "train_baseline",
    "test_baseline",
    "train_current",
    "test_current",
    "challenger_model",
    "evaluation_report",
    "champion",
    "champion_health",
    "drift_report",
    "predictions",
}
EXPECTED_CHECKS = {
    "raw_counts_schema",
    "raw_counts_non_negative_integers",
    "raw_counts_unique_keys",
    "raw_counts_completeness",
    "challenger_is_sane",
}
EXPECTED_JOBS = {
    "ingest_job",
    "counters_job",
    "retrain_job",
    "rollback_champion_job",
    "daily_predictions_job",
    "weekly_monitor_job",
}
# downstream of ingestion, runs are driven by data state: automation conditions (README)
EXPECTED_SCHEDULES = {"daily_ingest_schedule"}
EXPECTED_SENSORS = {
    "retrain_sensor",
    "run_failure_alert_sensor",
    "default_automation_condition_sensor",
}

REPOSITORY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        assetNodes {
          assetKey { path }
          assetChecksOrError { ... on AssetChecks { checks { name } } }
        }
        jobs { name }
        schedules { name }
        sensors { name }
      }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_STATUS = """
query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }
"""


@pytest.fixture
def webserver(tmp_path: Path) -> Iterator[str]:
    home = dagster_home_without_daemon(tmp_path / "dagster_home")
    port = free_port()
    env = env_without_platform_vars() | {
        "DAGSTER_HOME": str(home),
        "BIKE_DATA_DIR": str(tmp_path / "data"),
        "BIKE_SYNTHETIC_COUNTERS": "4",
    }
    webserver_bin = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(webserver_bin), "-m", "bike_assets.definitions", "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "web.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(
                    f"dagster-webserver exited: {(tmp_path / 'web.log').read_text()[-3000:]}"
                )
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("dagster-webserver did not start within 180 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return dict(body["data"])


def test_code_location_loads_lists_everything_and_runs_a_materialization(webserver: str) -> None:
    repos = graphql(webserver, REPOSITORY)["repositoriesOrError"]
    assert "nodes" in repos, repos
    (repo,) = repos["nodes"]
    assert repo["location"]["name"] == "bike_assets.definitions"
    assets = {"/".join(n["assetKey"]["path"]) for n in repo["assetNodes"]}
    assert assets >= EXPECTED_ASSETS
    checks = {
        c["name"]
        for n in repo["assetNodes"]
        for c in (n["assetChecksOrError"] or {}).get("checks", [])
    }
    assert checks >= EXPECTED_CHECKS
    assert {j["name"] for j in repo["jobs"]} >= EXPECTED_JOBS
    assert {s["name"] for s in repo["schedules"]} == EXPECTED_SCHEDULES
    assert {s["name"] for s in repo["sensors"]} == EXPECTED_SENSORS

    params = {
        "selector": {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "jobName": "ingest_job",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "2024-01-10"}]},
    }
    launched = graphql(webserver, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = graphql(webserver, RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(1)
    assert status == "SUCCESS"
