"""The catalog of the loaded definitions (#14): owners, tags, descriptions, code references,
column schemas from the tidy schema, freshness policies; the link builders (MLflow, reports)."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import requests

# The policy classes are not exported at the top level; the constructors (dg.FreshnessPolicy.cron
# and .time_window) are what the catalog uses.
from dagster._core.definitions.freshness import (
    CronFreshnessPolicy,
    FreshnessState,
    TimeWindowFreshnessPolicy,
)
from dagster._core.test_utils import freeze_time
from mlflow import MlflowClient

from bike_assets.catalog import PREDICTIONS_OWN
from bike_assets.monitoring.forecast_history import FORECAST_COLUMNS
from bike_assets.resources.report_store import GcsReportStore, LocalReportStore
from bike_assets.resources.tracking import MlflowTracking, ui_base_url
from bike_assets.schema import TIDY_COLUMNS, TIDY_DTYPES
from bike_assets.settings import PARIS_TZ, Settings, SettingsError
from bike_assets.sources.background_server import BackgroundHTTPServer
from bike_assets_tests.conftest import Platform

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train_baseline", "test_baseline", "train_current", "test_current")
TABLE_ASSETS = {
    "raw_counts",
    "counters",
    "train_baseline",
    "test_baseline",
    "train_current",
    "test_current",
    "predictions",
}


@contextmanager
def serve_directory(folder: Path) -> Iterator[str]:
    """What README suggests for BIKE_REPORTS_URL (`python -m http.server -d data/reports`), on
    a free port in a thread; yields its base URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Files(BackgroundHTTPServer):
        def _make_server(self) -> ThreadingHTTPServer:
            handler = functools.partial(Quiet, directory=str(folder))
            return ThreadingHTTPServer(("127.0.0.1", 0), handler)

    with Files() as server:
        yield f"http://127.0.0.1:{server.port}"


def evaluate_freshness(instance: dg.DagsterInstance) -> None:
    """One iteration of Dagster's freshness daemon (what `dagster-daemon run` does every 30 s)
    over this instance and the code location, loaded in process. Running the whole daemon
    would also start the automation sensors, which would launch runs of their own."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.freshness import FreshnessDaemon

    target = InProcessWorkspaceLoadTarget(
        InProcessCodeLocationOrigin(
            LoadableTargetOrigin(module_name="bike_assets.definitions", working_directory=str(ROOT))
        )
    )
    with create_test_daemon_workspace_context(target, instance) as context:
        list(FreshnessDaemon().run_iteration(context))


def _specs(settings: Settings) -> dict[str, dg.AssetSpec]:
    from bike_assets.definitions import build_definitions

    defs = build_definitions(settings)
    return {s.key.to_user_string(): s for a in defs.assets or [] for s in a.specs}  # type: ignore[union-attr]


def test_every_asset_has_an_owner_tags_a_description_and_its_code(platform_env: Path) -> None:
    specs = _specs(Settings.from_env())
    assert len(specs) >= 12
    functions = {n: n for n in specs} | {n: "splits" for n in SPLITS}
    for name, spec in specs.items():
        assert spec.owners == ["team:mobility-data"], name
        assert spec.tags["domain"] == "mobility" and spec.tags["pii"] == "none", name
        assert spec.tags["layer"] in {"source", "dataset", "model", "monitoring"}, name
        assert spec.description and len(spec.description) > 30, name
        (ref,) = spec.metadata["dagster/code_references"].code_references
        assert isinstance(ref, dg.LocalFileCodeReference), name
        # the reference points at the decorated function that defines the asset
        source = Path(ref.file_path).read_text().splitlines()
        assert ref.line_number is not None
        assert source[ref.line_number - 1].startswith("@dg."), (name, ref)
        defined = next(line for line in source[ref.line_number :] if line.startswith("def "))
        assert defined.startswith(f"def {functions[name]}("), (name, defined)
    # the multi-asset's four outputs say which window each one is
    assert specs["test_baseline"].description.startswith("The regression window")  # type: ignore[union-attr]


def test_owner_comes_from_the_settings_and_must_be_a_team_or_an_email(
    platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIKE_OWNER_TEAM", "team:velo")
    assert {tuple(s.owners) for s in _specs(Settings.from_env()).values()} == {("team:velo",)}
    for bad in ("velo", "team:"):
        monkeypatch.setenv("BIKE_OWNER_TEAM", bad)
        with pytest.raises(SettingsError, match="BIKE_OWNER_TEAM"):
            Settings.from_env()
    monkeypatch.setenv("BIKE_OWNER_TEAM", "data@example.org")
    assert Settings.from_env().owner_team == "data@example.org"


def test_table_assets_declare_their_columns_from_the_tidy_schema(platform_env: Path) -> None:
    specs = _specs(Settings.from_env())
    declared = {
        name: spec.metadata["dagster/column_schema"]
        for name, spec in specs.items()
        if "dagster/column_schema" in spec.metadata
    }
    assert set(declared) == TABLE_ASSETS
    for name in ("raw_counts", "train_baseline", "test_baseline", "train_current", "test_current"):
        schema = declared[name]
        assert [(c.name, c.type) for c in schema.columns] == list(TIDY_DTYPES.items())
        assert schema.constraints.other == ["one row per (counter_id, timestamp)"]
        assert all(c.description for c in schema.columns)
        nullable = {c.name for c in schema.columns if c.constraints.nullable}
        assert nullable == {"site_id", "site_name", "lat", "lon", "installation_date"}
    counters = {c.name: c.type for c in declared["counters"].columns}
    # the counters table keeps every tidy column but the hourly ones, with their tidy dtypes
    assert {k: v for k, v in counters.items() if k in TIDY_COLUMNS} == {
        k: v for k, v in TIDY_DTYPES.items() if k not in ("timestamp", "count")
    }
    # the predictions table's columns are the writer's contract, each one described here
    assert [c.name for c in declared["predictions"].columns] == FORECAST_COLUMNS
    assert set(FORECAST_COLUMNS) <= set(PREDICTIONS_OWN) | set(TIDY_COLUMNS)
    kinds = {c.name: c.type for c in declared["predictions"].columns}
    assert kinds["counter_id"] == "string" and kinds["predicted_count"] == "float64"


def test_freshness_policies_are_the_first_class_ones(
    platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = _specs(Settings.from_env())
    with_policy = {n for n, s in specs.items() if s.freshness_policy is not None}
    assert with_policy == {"raw_counts", "champion", "champion_health", "drift_report"}

    raw = specs["raw_counts"].freshness_policy
    assert isinstance(raw, CronFreshnessPolicy)
    assert (raw.deadline_cron, raw.timezone) == ("0 3 * * *", PARIS_TZ)
    assert raw.lower_bound_delta == timedelta(hours=3)  # materialized after midnight Paris
    for weekly in ("champion_health", "drift_report"):
        policy = specs[weekly].freshness_policy
        assert isinstance(policy, CronFreshnessPolicy)
        assert (policy.deadline_cron, policy.timezone) == ("0 6 * * 1", PARIS_TZ)

    champion = specs["champion"].freshness_policy
    assert isinstance(champion, TimeWindowFreshnessPolicy)
    assert champion.fail_window.to_timedelta() == timedelta(days=14)
    monkeypatch.setenv("RETRAIN_MAX_AGE_DAYS", "3")
    champion = _specs(Settings.from_env())["champion"].freshness_policy
    assert isinstance(champion, TimeWindowFreshnessPolicy)
    assert champion.fail_window.to_timedelta() == timedelta(days=3)
    assert champion.warn_window is not None
    assert champion.warn_window.to_timedelta() == timedelta(days=2)
    monkeypatch.setenv("RETRAIN_MAX_AGE_DAYS", "nan")
    with pytest.raises(SettingsError, match="RETRAIN_MAX_AGE_DAYS"):
        Settings.from_env()


def test_freshness_is_evaluated_as_health_and_raw_counts_turns_stale(platform: Platform) -> None:
    """Dagster's own freshness evaluation over a real instance: fresh right after yesterday's
    Paris day is ingested; FAIL once a later 03:00 Paris deadline passes without a new one."""
    raw_counts = dg.AssetKey("raw_counts")
    today = datetime.now(ZoneInfo(PARIS_TZ)).date()
    platform.ingest(today - timedelta(days=1), today - timedelta(days=1))

    def state() -> FreshnessState:
        evaluate_freshness(platform.instance)
        return platform.instance.get_freshness_state_records([raw_counts])[
            raw_counts
        ].freshness_state

    assert state() == FreshnessState.PASS
    # The clock moved on (Dagster's own time switch; the instance and the policy are real).
    with freeze_time(datetime.now(UTC) + timedelta(days=2)):
        assert state() == FreshnessState.FAIL
    champion = dg.AssetKey("champion")
    records = platform.instance.get_freshness_state_records([champion])
    assert records[champion].freshness_state == FreshnessState.UNKNOWN  # never materialized


def test_code_references_link_to_the_repository_when_a_git_url_is_set(
    platform_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIKE_CODE_GIT_URL", "https://github.com/example/bike-traffic")
    monkeypatch.setenv("BIKE_CODE_GIT_BRANCH", "release")
    for name, spec in _specs(Settings.from_env()).items():
        (ref,) = spec.metadata["dagster/code_references"].code_references
        assert isinstance(ref, dg.UrlCodeReference), name
        prefix = "https://github.com/example/bike-traffic/tree/release/"
        assert ref.url.startswith(prefix), ref.url
        # the linked path is this checkout's file of the same name
        relative = ref.url.removeprefix(prefix).split("#")[0]
        assert (ROOT / relative).is_file(), relative


def test_mlflow_links_are_urls_on_a_server_and_file_urls_otherwise(tmp_path: Path) -> None:
    assert ui_base_url("sqlite:///data/mlflow.db") is None
    assert ui_base_url("file:///tmp/mlruns") is None
    # credentials in the tracking URI never reach the link every UI user sees
    assert ui_base_url("https://u:secret@mlflow.example:8443/ml/?x=1") == (
        "https://mlflow.example:8443/ml"
    )
    server = MlflowTracking(tracking_uri="http://127.0.0.1:5000")
    link = server.model_version_link("7")
    assert isinstance(link, dg.UrlMetadataValue)
    assert link.url == "http://127.0.0.1:5000/#/models/bike-counts/versions/7"

    # a real sqlite store: the run's link is its artifact folder, as a file:// URL that opens
    local = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlartifacts"),
    )
    run_id = local.start_or_get_run("dagster-run-1", "run")
    local.log_dict(run_id, {"a": 1}, "evaluation/report.json")
    run_link = local.run_link(run_id)
    assert isinstance(run_link, dg.UrlMetadataValue)
    folder = (tmp_path / "mlartifacts").resolve() / run_id / "artifacts"
    assert run_link.url == folder.as_uri()
    assert (folder / "evaluation" / "report.json").exists()
    # a version the registry does not know: its models:/ URI
    version_link = local.model_version_link("7")
    assert isinstance(version_link, dg.PathMetadataValue)
    assert version_link.path == "models:/bike-counts/7"

    # the same store shown by an MLflow UI (MLFLOW_UI_URL, the demo's `mlflow ui`): UI links
    shown = MlflowTracking(tracking_uri=local.tracking_uri, ui_url="http://127.0.0.1:5000/")
    ui_link = shown.run_link(run_id)
    assert isinstance(ui_link, dg.UrlMetadataValue)
    experiment = MlflowClient(local.tracking_uri).get_run(run_id).info.experiment_id
    assert ui_link.url == f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"


def test_local_reports_are_written_whole_and_linked_by_a_url_that_opens(tmp_path: Path) -> None:
    store = LocalReportStore(root=str(tmp_path / "reports"))
    stored = store.put("drift_ab.html", b"<html>drift</html>", "text/html")
    assert stored.url.startswith("file://")
    # the file:// URL opens (urllib follows file:// as a browser would) on the report's bytes
    with urllib.request.urlopen(stored.url) as opened:
        assert opened.read() == b"<html>drift</html>"
    assert Path(stored.uri).read_bytes() == b"<html>drift</html>"
    assert [p.name for p in (tmp_path / "reports").iterdir()] == ["drift_ab.html"]  # no temp left
    for bad in ("../x.html", "a/b.json", ""):
        with pytest.raises(ValueError, match="one file name"):
            store.put(bad, b"x", "text/plain")

    # with BIKE_REPORTS_URL the link goes through whatever serves the folder
    with serve_directory(tmp_path / "reports") as base_url:
        served = LocalReportStore(root=str(tmp_path / "reports"), base_url=base_url)
        again = served.put("evaluation_v3.json", b'{"decision": "DEPLOY"}', "application/json")
        assert again.url == f"{base_url}/evaluation_v3.json"
        response = requests.get(again.url, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"decision": "DEPLOY"}


def test_gcs_reports_are_linked_through_the_authenticated_console_url() -> None:
    store = GcsReportStore(bucket="bikes", prefix="bike-traffic/")
    assert store.url_for("drift_1.html") == (
        "https://storage.cloud.google.com/bikes/bike-traffic/reports/drift_1.html"
    )


def test_readme_has_the_automation_table() -> None:
    """#14: written by the automation work: a table saying which asset is driven by what."""
    blocks, block = [], []
    for line in [*(ROOT / "README.md").read_text().splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append("\n".join(block))
            block = []
    automation = [
        b
        for b in blocks
        if all(f"`{a}`" in b for a in ("predictions", "champion_health", "drift_report"))
        and ("eager" in b or "on_cron" in b)
    ]
    assert automation, "README has no table of what drives each asset"
