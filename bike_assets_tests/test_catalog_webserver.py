"""The proof of #14 through a real `dagster-webserver` GraphQL API, as a user's UI sees it.

One module fixture builds a real little platform and one webserver reads it:
a local MLflow tracking server (sqlite backend, `mlflow server`), a persistent Dagster instance
in a temporary DAGSTER_HOME on which the jobs run in-process (ingest 5 weeks up to yesterday,
counters, retrain, weekly monitoring, today's predictions), one pass of Dagster's own freshness
daemon over that instance, and `dagster-webserver` on the same DAGSTER_HOME and environment
(started before the jobs, so it loads the code location while they run). Every process started
here is stopped by the fixture, which then asserts that none of their process groups is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import pytest
import requests

from bike_assets.catalog import column_schemas
from bike_assets.resources.warehouse import SCHEMA
from bike_assets.settings import Settings
from bike_assets_tests.conftest import (
    RANGE_END,
    RANGE_START,
    dagster_home_without_daemon,
    env_without_platform_vars,
    retrain_config,
)
from bike_assets_tests.local_http import free_port
from bike_assets_tests.test_catalog import SPLITS, TABLE_ASSETS, evaluate_freshness
from bike_assets_tests.test_webserver_e2e import graphql

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    description
    owners { __typename ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    tags { key value }
    metadataEntries {
      label
      __typename
      ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
    }
    internalFreshnessPolicy { __typename }
    freshnessStatusInfo { freshnessStatus }
  }
}
"""
LATEST_METADATA = """
query Latest($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        metadataEntries {
          label
          __typename
          ... on UrlMetadataEntry { url }
          ... on PathMetadataEntry { path }
          ... on TextMetadataEntry { text }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class Catalog:
    url: str  # the webserver
    mlflow_url: str
    data_dir: Path


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited: {log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.RequestException:  # not listening yet, or too busy starting to answer
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {seconds:.0f} s: {log.read_text()[-3000:]}")


def _spawn(
    command: list[str], env: dict[str, str], log: Path, started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """Start a program of this venv in its own session (its children die with it, see _stop),
    in the folder of `log` (anything it writes stays in the test's folder), stderr to `log`;
    remembered in `started` for the teardown."""
    proc = subprocess.Popen(
        [str(BIN / command[0]), *command[1:]],
        env=env,
        cwd=log.parent,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )
    started.append(proc)
    return proc


def _live_members(group: int) -> list[int]:
    """Processes of process group `group` that are not zombies (from /proc: Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": split after the command, which may hold spaces
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The process and its children (mlflow's workers, the webserver's code server): each was
    started in its own session, so its process group is everything it started."""
    group = proc.pid
    if _live_members(group):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _live_members(group) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _live_members(group):
        os.killpg(group, signal.SIGKILL)
    proc.wait(timeout=10)


def _populate(instance: dg.DagsterInstance, today: date) -> None:
    from bike_assets.definitions import build_definitions

    defs = build_definitions(Settings.from_env())

    def run(job: str, **kwargs: Any) -> None:
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, **kwargs)
        assert result.success, job

    first, last = today - timedelta(days=35), today - timedelta(days=1)
    run("ingest_job", tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()})
    run("counters_job")
    run("retrain_job", run_config=retrain_config())
    run("weekly_monitor_job")
    run("daily_predictions_job", partition_key=today.isoformat())


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    import pandas as pd

    tmp = tmp_path_factory.mktemp("catalog_ui")
    home, data_dir = dagster_home_without_daemon(tmp / "dagster_home"), tmp / "data"
    mlflow_port, web_port = free_port(), free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env = env_without_platform_vars() | {
        "DAGSTER_HOME": str(home),
        "BIKE_DATA_DIR": str(data_dir),
        "BIKE_SYNTHETIC_COUNTERS": "4",
        "BIKE_SYNTHETIC_SEED": "7",
        "MLFLOW_TRACKING_URI": mlflow_url,
    }
    started: list[subprocess.Popen[bytes]] = []
    # Opened (its storage created) before the webserver starts on the same DAGSTER_HOME, so the
    # two never race to create the sqlite tables.
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    try:
        mlflow_log, web_log = tmp / "mlflow.log", tmp / "web.log"
        mlflow = _spawn(
            [
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{tmp / 'mlflow.db'}",
                "--artifacts-destination",
                str(tmp / "mlflow-artifacts"),
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--allowed-hosts",
                f"127.0.0.1,127.0.0.1:{mlflow_port},localhost,localhost:{mlflow_port}",
            ],
            env,
            mlflow_log,
            started,
        )
        # Started now: it loads the code location while the jobs below run (it reads the
        # instance only when asked).
        web = _spawn(
            [
                "dagster-webserver",
                "-m",
                "bike_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(web_port),
            ],
            env,
            web_log,
            started,
        )
        _wait_http(f"{mlflow_url}/health", mlflow, mlflow_log, 180)

        with pytest.MonkeyPatch.context() as patch:
            for name in set(os.environ) - set(env):
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            today = pd.Timestamp.now(tz="Europe/Paris").date()
            _populate(instance, today)
            evaluate_freshness(instance)

        url = f"http://127.0.0.1:{web_port}"
        _wait_http(f"{url}/server_info", web, web_log, 180)
        yield Catalog(url, mlflow_url, data_dir)
    finally:
        for proc in reversed(started):
            _stop(proc)
        instance.dispose()
        # nothing left of their process groups (mlflow's workers too)
        assert not [pid for proc in started for pid in _live_members(proc.pid)]


def _nodes(catalog: Catalog) -> dict[str, dict[str, Any]]:
    nodes = graphql(catalog.url, ASSET_NODES)["assetNodes"]
    return {"/".join(n["assetKey"]["path"]): n for n in nodes}


def _latest_metadata(catalog: Catalog, asset: str) -> dict[str, dict[str, Any]]:
    node = graphql(catalog.url, LATEST_METADATA, {"path": [asset]})["assetNodeOrError"]
    (materialization,) = node["assetMaterializations"]
    return {e["label"]: e for e in materialization["metadataEntries"]}


def test_every_asset_node_has_an_owner_a_description_and_tags(catalog: Catalog) -> None:
    nodes = _nodes(catalog)
    assert set(nodes) >= TABLE_ASSETS | {"challenger_model", "champion", "drift_report"}
    for name, node in nodes.items():
        assert node["owners"] == [{"__typename": "TeamAssetOwner", "team": "mobility-data"}], name
        assert node["description"], name
        tags = {t["key"]: t["value"] for t in node["tags"]}
        assert tags["domain"] == "mobility", name


def test_table_assets_return_the_column_schema_of_the_stored_tables(catalog: Catalog) -> None:
    nodes = _nodes(catalog)
    declared = column_schemas()
    served: dict[str, list[tuple[str, str]]] = {}
    for name, node in nodes.items():
        for entry in node["metadataEntries"]:
            if entry["__typename"] == "TableSchemaMetadataEntry":
                assert entry["label"] == "dagster/column_schema"
                served[name] = [(c["name"], c["type"]) for c in entry["schema"]["columns"]]
                assert all(c["description"] for c in entry["schema"]["columns"]), name
    assert set(served) == TABLE_ASSETS
    for name, columns in served.items():
        assert columns == [(c.name, c.type) for c in declared[name].columns], name
    # and the declared columns are the stored ones, in order
    with duckdb.connect(str(catalog.data_dir / "warehouse.duckdb"), read_only=True) as db:
        for name in TABLE_ASSETS:
            stored = [
                row[0]
                for row in db.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = ? and table_name = ? order by ordinal_position",
                    [SCHEMA, name],
                ).fetchall()
            ]
            assert stored == [c for c, _ in served[name]], name
    assert {name for name in SPLITS} <= set(served)


def test_table_assets_report_their_row_counts(catalog: Catalog) -> None:
    for name in TABLE_ASSETS:  # the latest materialization (one partition when partitioned)
        rows = _latest_metadata(catalog, name)["dagster/row_count"]
        assert rows["__typename"] == "IntMetadataEntry" and rows["intValue"] > 0, name


def test_raw_counts_reports_a_fresh_state_and_the_policies_are_visible(catalog: Catalog) -> None:
    nodes = _nodes(catalog)
    # ingested just now, i.e. after midnight Paris: the 03:00 policy passes (HEALTHY)
    assert nodes["raw_counts"]["freshnessStatusInfo"] == {"freshnessStatus": "HEALTHY"}
    policies = {
        name: node["internalFreshnessPolicy"]["__typename"]
        for name, node in nodes.items()
        if node["internalFreshnessPolicy"]
    }
    assert policies == {
        "raw_counts": "CronFreshnessPolicy",
        "champion": "TimeWindowFreshnessPolicy",
        "champion_health": "CronFreshnessPolicy",
        "drift_report": "CronFreshnessPolicy",
    }
    for name in ("champion", "champion_health", "drift_report"):
        assert nodes[name]["freshnessStatusInfo"] == {"freshnessStatus": "HEALTHY"}, name
    assert nodes["counters"]["freshnessStatusInfo"] is None  # no policy, no state


def _mlflow_api(catalog: Catalog, path: str, **params: str) -> requests.Response:
    return requests.get(f"{catalog.mlflow_url}/api/2.0/mlflow/{path}", params=params, timeout=30)


def test_champion_and_drift_report_carry_links_that_open(catalog: Catalog) -> None:
    champion = _latest_metadata(catalog, "champion")
    link = champion["mlflow_model_version"]
    assert link["__typename"] == "UrlMetadataEntry"
    assert link["url"].startswith(f"{catalog.mlflow_url}/#/models/bike-counts/versions/")
    # the page opens, and the version it names exists on that server
    assert requests.get(link["url"], timeout=30).status_code == 200
    name_version = link["url"].split("#/models/")[1].split("/versions/")
    found = _mlflow_api(
        catalog, "model-versions/get", name=name_version[0], version=name_version[1]
    )
    assert found.status_code == 200, found.text
    assert name_version[1] == champion["champion_version"]["text"]  # the champion's version

    drift = _latest_metadata(catalog, "drift_report")["html_report"]
    assert drift["__typename"] == "UrlMetadataEntry"
    assert urlsplit(drift["url"]).scheme == "file"
    with urllib.request.urlopen(drift["url"]) as opened:  # the file the link names exists
        assert b"<html" in opened.read(4096).lower()


def test_training_and_evaluation_link_their_run_and_report(catalog: Catalog) -> None:
    challenger = _latest_metadata(catalog, "challenger_model")
    run = challenger["mlflow_run"]
    assert run["__typename"] == "UrlMetadataEntry"
    assert requests.get(run["url"], timeout=30).status_code == 200
    run_id = run["url"].rsplit("/runs/", 1)[1]
    assert _mlflow_api(catalog, "runs/get", run_id=run_id).status_code == 200

    report = _latest_metadata(catalog, "evaluation_report")["report"]
    assert report["__typename"] == "UrlMetadataEntry"
    with urllib.request.urlopen(report["url"]) as opened:
        assert json.loads(opened.read())["decision"] in {"DEPLOY", "SKIP", "REJECT"}
