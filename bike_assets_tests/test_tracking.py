"""The MLflow tracking resource against a real MLflow (sqlite store and artifacts in a temporary
directory): one MLflow run per Dagster run, what a logged model carries, tags, artifacts,
aliases."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from bike_assets.ml.artifact import load_pipeline
from bike_assets.ml.model import predict_counts
from bike_assets.resources.tracking import (
    DAGSTER_RUN_TAG,
    LoggedModel,
    MlflowTracking,
    requirements,
    stage_code,
)
from bike_assets.settings import REGISTERED_MODEL_NAME
from bike_assets_tests.serving_fixtures import synthetic_counts, trained


def make_tracking(root: Path) -> MlflowTracking:
    return MlflowTracking(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_location=str(root / "artifacts")
    )


@dataclass
class Logged:
    tracking: MlflowTracking
    client: MlflowClient
    challenger: LoggedModel
    naive: LoggedModel
    warnings: list[str]
    log_lines: list[str]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> MlflowTracking:
    """One store for the module: creating MLflow's sqlite schema takes seconds."""
    return make_tracking(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture(scope="module")
def logged(tracking: MlflowTracking) -> Logged:
    """Two models trained in ONE Dagster run (a challenger and a second one, as the lifecycle
    logs the seasonal naive), logged while collecting every warning and MLflow log line."""
    handler = _Collect()
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            challenger = tracking.log_training(
                trained("1"),
                params={"max_iter": 30, "kind": "hgb"},
                metrics={"validation_rmse": 12.0, "validation_r2": float("nan")},
                tags={"trained_end": "2024-05-27T00:00:00+00:00"},
                run_name="retrain-1",
                dagster_run_id="dagster-run-1",
                extra_pipelines={"evaluated": trained("2")},
            )
            naive = tracking.log_training(
                trained("2"),
                params={"max_iter": 12},
                metrics={"validation_rmse": 15.0},
                tags={},
                run_name="retrain-1",
                dagster_run_id="dagster-run-1",
                model_name="naive",
                alias=None,
            )
    finally:
        mlflow_logger.removeHandler(handler)
    return Logged(
        tracking=tracking,
        client=MlflowClient(tracking_uri=tracking.tracking_uri),
        challenger=challenger,
        naive=naive,
        warnings=[str(w.message) for w in caught],
        log_lines=handler.lines,
    )


def test_one_mlflow_run_per_dagster_run(tracking: MlflowTracking) -> None:
    first = tracking.start_or_get_run("run-a", run_name="retrain-a")
    assert tracking.start_or_get_run("run-a") == first
    other = tracking.start_or_get_run("run-b")
    assert other != first
    run = MlflowClient(tracking_uri=tracking.tracking_uri).get_run(first)
    assert run.data.tags[DAGSTER_RUN_TAG] == "run-a"
    assert run.info.run_name == "retrain-a"
    assert run.info.status == "FINISHED"  # a crashed step leaves no run RUNNING


def test_steps_racing_for_the_run_of_a_dagster_run_agree_on_one(tracking: MlflowTracking) -> None:
    tracking.start_or_get_run("warm-up")  # the experiment exists; the race is on the run only
    start = threading.Barrier(4)
    ids: list[str] = []

    def step() -> None:
        start.wait()
        ids.append(tracking.start_or_get_run("run-x"))

    threads = [threading.Thread(target=step) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 4
    assert len(set(ids)) == 1
    client = MlflowClient(tracking_uri=tracking.tracking_uri)
    experiment = client.get_experiment_by_name(tracking.experiment_name)
    alive = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.{DAGSTER_RUN_TAG} = 'run-x'"
    )
    assert [r.info.run_id for r in alive] == ids[:1]


def test_models_of_one_dagster_run_share_its_mlflow_run(logged: Logged) -> None:
    assert logged.challenger.run_id == logged.naive.run_id
    assert (logged.challenger.version, logged.naive.version) == ("1", "2")
    run = logged.client.get_run(logged.challenger.run_id)
    assert run.data.tags[DAGSTER_RUN_TAG] == "dagster-run-1"
    # the second model's params and metrics are prefixed: MLflow never changes a param
    assert run.data.params["max_iter"] == "30"
    assert run.data.params["naive.max_iter"] == "12"
    assert run.data.metrics["validation_rmse"] == 12.0
    assert run.data.metrics["naive.validation_rmse"] == 15.0
    assert "validation_r2" not in run.data.metrics  # NaN is not a score
    challenger = logged.client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "challenger")
    assert str(challenger.version) == "1"  # alias=None left it where it was


def test_nothing_is_pickled_and_mlflow_does_not_warn_about_it(logged: Logged) -> None:
    said = [m for m in logged.warnings + logged.log_lines if "pickle" in m.lower()]
    assert said == []
    info = mlflow.models.get_model_info(logged.challenger.model_uri)
    flavor = info.flavors["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"  # models from code
    assert flavor["artifacts"]["pipeline"]["path"].endswith(".skops")


def test_the_logged_model_has_a_signature_and_an_input_example(
    logged: Logged, tmp_path: Path
) -> None:
    info = mlflow.models.get_model_info(logged.challenger.model_uri)
    assert info.signature is not None
    inputs = {c.name: str(c.type) for c in info.signature.inputs.inputs}
    assert inputs == {"counter_id": "DataType.string", "timestamp": "DataType.string"}
    assert info.signature.outputs.inputs[0].type == np.dtype("float64")
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.challenger.model_uri, dst_path=str(tmp_path)
    )
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert list(example.columns) == ["counter_id", "timestamp"]
    assert set(example["counter_id"]) <= set(trained("1").named_steps["features"].counters_)
    assert all(t.endswith("+00:00") for t in example["timestamp"])  # an instant, not a wall time


def test_requirements_are_the_real_dependencies_at_installed_versions(logged: Logged) -> None:
    path = mlflow.pyfunc.get_model_dependencies(logged.challenger.model_uri)
    lines = Path(path).read_text().split()
    assert not [r for r in lines if "bike" in r]  # the project travels as code, not as a package
    for dist in ("scikit-learn", "pandas", "numpy", "holidays", "skops", "mlflow"):
        assert f"{dist}=={version(dist)}" in lines


def test_requirements_follow_the_imports_of_the_shipped_code(tmp_path: Path) -> None:
    shipped = stage_code(tmp_path)
    (shipped / "ml" / "extra.py").write_text("import scipy.sparse\n\ndef f():\n    import yaml\n")
    found = requirements(shipped.rglob("*.py"))
    assert f"scipy=={version('scipy')}" in found
    assert not [r for r in found if r.lower().startswith("pyyaml")]  # only module-level imports


def test_extra_pipelines_are_run_artifacts_that_load(logged: Logged, tmp_path: Path) -> None:
    local = mlflow.artifacts.download_artifacts(
        run_id=logged.challenger.run_id,
        artifact_path="pipelines/evaluated.skops",
        dst_path=str(tmp_path),
        tracking_uri=logged.tracking.tracking_uri,
    )
    frame = synthetic_counts(days=2)
    np.testing.assert_array_equal(
        predict_counts(load_pipeline(local), frame), predict_counts(trained("2"), frame)
    )


def test_version_tags_report_and_champion_alias(logged: Logged, tmp_path: Path) -> None:
    tracking, run_id = logged.tracking, logged.challenger.run_id
    tags = {"decision": "DEPLOY", "reason": "first model", "deploy_min_gain": "0.02"}
    tracking.tag_version("1", tags)
    tracking.log_dict(
        run_id, {"decision": "DEPLOY", "splits": {"r2": 0.8}}, "evaluation/report.json"
    )
    tracking.log_metrics(run_id, {"test_current_r2": 0.8, "test_baseline_r2": float("nan")})
    tracking.set_champion("1")

    champion = logged.client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion")
    assert str(champion.version) == "1"
    assert champion.tags == tags
    report = logged.client.download_artifacts(run_id, "evaluation/report.json", str(tmp_path))
    assert json.loads(Path(report).read_text()) == {"decision": "DEPLOY", "splits": {"r2": 0.8}}
    metrics = logged.client.get_run(run_id).data.metrics
    assert metrics["test_current_r2"] == 0.8
    assert "test_baseline_r2" not in metrics
