"""The production topology for tests: a fresh Postgres database, `bike stack up` on free ports,
GraphQL helpers, and a teardown that proves no process is left.

Used by the `stack` tests (test_stack.py, test_run_monitoring.py); each boots its own stack.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from bike_assets import stack
from bike_assets_tests.conftest import env_without_platform_vars
from bike_assets_tests.local_http import free_port
from bike_assets_tests.stack import require_postgres

PG_HOST, PG_PORT = "127.0.0.1", 5432
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
REPOSITORY = "__repository__"  # Definitions, not a named @repository


def postgres_user() -> str:
    """The machine's Postgres trusts `postgres` (CI images) or `root` (some dev boxes)."""
    for user in ("postgres", "root"):
        try:
            psycopg2.connect(
                host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=3
            ).close()
            return user
        except psycopg2.OperationalError:
            continue
    pytest.fail("PostgreSQL on 127.0.0.1:5432 trusts neither `postgres` nor `root`")


def drop_databases(user: str, names: Sequence[str]) -> None:
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            for name in names:
                # FORCE: a killed process may leave a connection behind (Postgres 13+)
                cursor.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    finally:
        conn.close()


def processes_with_env(name: str, value: str) -> list[int]:
    """Live pids whose environment has `name=value` (only our own processes are readable)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class RunningStack:
    config: stack.StackConfig
    started: list[stack.Started]
    up_seconds: float

    @property
    def graphql_url(self) -> str:
        return self.config.webserver_url

    def gql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return stack.graphql(self.graphql_url, query, variables)

    def log(self, service: str) -> str:
        return (self.config.logs_dir / f"{service}.log").read_text(errors="replace")


@contextmanager
def running_stack(
    tmp_path: Path,
    env: Mapping[str, str],
    only: Sequence[str] | None = None,
    instance_config: Path | None = None,
) -> Iterator[RunningStack]:
    """`bike stack up` on a fresh database and free ports; down, drop and check at the end."""
    require_postgres(PG_HOST, PG_PORT)
    user = postgres_user()
    token = secrets.token_hex(4)
    databases = [f"bike_test_{token}", f"bike_test_{token}_mlflow"]
    data_dir = tmp_path / "data"
    full_env = (
        env_without_platform_vars()
        | {
            "BIKE_DATA_DIR": str(data_dir),
            "DAGSTER_POSTGRES_HOST": PG_HOST,
            "DAGSTER_POSTGRES_PORT": str(PG_PORT),
            "DAGSTER_POSTGRES_USER": user,
            "DAGSTER_POSTGRES_PASSWORD": "",
            "DAGSTER_POSTGRES_DB": databases[0],
            "MLFLOW_POSTGRES_DB": databases[1],
            "DAGSTER_GRPC_PORT": str(free_port()),
            "DAGSTER_WEBSERVER_PORT": str(free_port()),
            "BIKE_API_PORT": str(free_port()),
            "MLFLOW_PORT": str(free_port()),
            "PROMETHEUS_PORT": str(free_port()),
            "PUSHGATEWAY_PORT": str(free_port()),
            "BIKE_STACK_READY_TIMEOUT": "300",
        }
        | dict(env)
    )
    if instance_config is not None:
        full_env["BIKE_STACK_INSTANCE_CONFIG"] = str(instance_config)
    config = stack.StackConfig.from_env(full_env)
    t0 = time.monotonic()
    try:
        started = stack.up(config, only, echo=lambda _line: None)
        running = RunningStack(config, started, time.monotonic() - t0)
        yield running
    finally:
        try:
            stack.down(config, echo=lambda _line: None)
            # Nothing that this stack started (services, code server children, run workers)
            # may outlive `down`: they all carry this stack's DAGSTER_HOME or BIKE_DATA_DIR.
            left = processes_with_env("DAGSTER_HOME", str(config.dagster_home))
            left += processes_with_env("BIKE_DATA_DIR", str(data_dir))
            assert not left, f"processes left after `bike stack down`: {sorted(set(left))}"
        finally:
            drop_databases(user, databases)


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""
RUNS = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
  }
}
"""
RUN_EVENTS = """
query Events($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    ... on EventConnection {
      events { __typename ... on MessageEvent { message } }
      cursor
      hasMore
    }
  }
}
"""


def launch_run(
    running: RunningStack,
    job: str,
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> str:
    params = {
        "selector": {
            "repositoryLocationName": stack.CODE_LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": job,
        },
        "runConfigData": dict(run_config or {}),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    launched = running.gql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return str(launched["run"]["runId"])


def launch_backfill(
    running: RunningStack,
    asset: str,
    partitions: Sequence[str],
    run_config: Mapping[str, Any] | None = None,
) -> str:
    params = {
        "partitionNames": list(partitions),
        "assetSelection": [{"path": [asset]}],
        "runConfigData": dict(run_config or {}),
    }
    launched = running.gql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return str(launched["backfillId"])


def runs(running: RunningStack, **filters: Any) -> list[dict[str, Any]]:
    """Runs matching a GraphQL RunsFilter, e.g. tags=[{"key": ..., "value": ...}]."""
    return list(running.gql(RUNS, {"filter": filters})["runsOrError"]["results"])


def wait_for(what: str, check: Any, timeout_s: float, poll_s: float = 1.0) -> Any:
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def wait_run(running: RunningStack, run_id: str, timeout_s: float = 300) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        (run,) = runs(running, runIds=[run_id])
        return run if run["status"] in FINISHED else None

    run: dict[str, Any] = wait_for(f"run {run_id} to finish", finished, timeout_s)
    return run


def run_events(running: RunningStack, run_id: str) -> list[dict[str, Any]]:
    """Every event of a run (the webserver pages them)."""
    events: list[dict[str, Any]] = []
    after = None
    while True:
        page = running.gql(RUN_EVENTS, {"runId": run_id, "after": after})["logsForRun"]
        events += page["events"]
        if not page["hasMore"]:
            return events
        after = page["cursor"]


def event_types(running: RunningStack, run_id: str) -> list[str]:
    return [e["__typename"] for e in run_events(running, run_id)]


def failure_messages(running: RunningStack, run_id: str) -> list[str]:
    events = run_events(running, run_id)
    return [
        e.get("message", "")
        for e in events
        if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
    ]
