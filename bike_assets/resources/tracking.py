"""MLflow through a small typed resource: one MLflow run per Dagster run, models MLflow can load.

Why not dagster-mlflow: its `mlflow_tracking` is a legacy `@resource` (taken through
`required_resource_keys`) whose one service is finding the MLflow run tagged with the Dagster run
id, or starting it, and making it the *global* active run. `start_or_get_run` below does the same
lookup with `MlflowClient` and explicit run ids, so steps of one Dagster run share a run without
global state, and the resource stays a typed `ConfigurableResource`.

Guarantees, method by method:
* `start_or_get_run(dagster_run_id, run_name)` returns the id of THE MLflow run tagged
  `dagster_run_id` in the experiment, creating it if there is none. Two steps racing may both
  create one; each then waits `RACE_SETTLE_S`, re-reads the tagged runs, the oldest wins and a
  loser deletes its own, so both return the same id (unless creating a run takes longer than
  the pause). The run is left FINISHED after every write of this resource (MLflow
  accepts writes to a finished run; a crashed step thus leaves no run RUNNING forever).
* `log_training(pipeline, ...)` logs params, metrics and tags to that run (or to a new run when
  `dagster_run_id` is None) and logs the pipeline as the MLflow model `model_name`, registered as
  a new version of `registered_model_name` and given the alias `alias` (default `challenger`):
  - the model is "models from code" (`bike_assets/ml/mlflow_model.py`) with the pipeline as a
    skops artifact: nothing is pickled, and MLflow never warns about pickle;
  - `code_paths` ship `bike_assets/ml/` and the `bike_assets` modules it imports, so
    `mlflow.pyfunc.load_model("models:/bike-counts@champion")` works without this project
    installed; its pip requirements are the distributions those modules import, pinned to the
    installed versions (never `bike-traffic`, which is not published);
  - a signature and an input example. `input_example` is raw pipeline input (`counter_id` str,
    `timestamp` tz-aware datetime; default: 2 counters the pipeline knows x 3 hours from now);
    the MLflow model's input is the same rows with ISO 8601 strings as timestamps, i.e.
    `/predict`'s records (MLflow's schema admits only tz-naive datetimes); output: counts;
  - `extra_pipelines` (name -> fitted Pipeline) are saved as plain run artifacts
    `pipelines/<name>.skops` (loadable with `bike_assets.ml.artifact.load_pipeline`).
  With a `model_name` other than "model", params and metrics are prefixed with `<model_name>.`:
  one run can then hold several trained models (MLflow refuses to change a param's value).
* `log_metrics(run_id, metrics)` adds metrics to a run; NaN values are skipped (not a score).
* `log_dict(run_id, data, artifact_file)` stores `data` as a JSON/YAML artifact of the run
  (e.g. `evaluation/report.json`); the extension of `artifact_file` picks the format.
* `tag_version(version, tags)` sets tags on a version of the registered model (values as str):
  the decision, its reason, the thresholds.
* `set_champion(version)` moves the `champion` alias (the champion pointer stays the source of
  truth the server reads; the alias follows it).
* `run_link(run_id)` / `model_version_link(version)`: what the Dagster UI shows for a run and a
  registered version: a URL into the MLflow UI when the tracking URI is an http(s) server
  (credentials removed), a path or `models:/` URI otherwise (#14).
Every method raises on MLflow errors; callers decide whether a tracking failure fails the step.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import dagster as dg
import pandas as pd
from pydantic import Field
from sklearn.pipeline import Pipeline

from bike_assets.ml.artifact import ARTIFACT_SUFFIX, save_pipeline
from bike_assets.settings import REGISTERED_MODEL_NAME

DAGSTER_RUN_TAG = "dagster_run_id"
RACE_SETTLE_S = 0.5  # once per Dagster run, when its MLflow run is created
MODEL_CODE_MODULE = "bike_assets.ml.mlflow_model"
PIPELINE_ARTIFACT = "pipeline"  # = bike_assets.ml.mlflow_model.PIPELINE_ARTIFACT (not imported:
# importing that module registers its model with MLflow)


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    version: str
    model_uri: str


class MlflowTracking(dg.ConfigurableResource):  # type: ignore[misc]
    tracking_uri: str = Field(description="e.g. sqlite:///data/mlflow.db or https://mlflow.example")
    experiment_name: str = "bike-traffic"
    registered_model_name: str = REGISTERED_MODEL_NAME
    artifact_location: str = Field(
        default="", description="Where new experiments store artifacts (local dir or gs://...)."
    )
    ui_url: str = Field(
        default="",
        description="The MLflow UI showing this store when tracking goes straight to a database "
        "(MLFLOW_UI_URL, e.g. `mlflow ui` on the demo's sqlite store); empty: derived from an "
        "http(s) tracking URI, else links are artifact folders.",
    )

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self) -> str:
        client = self._client()
        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_location or None
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        try:
            return str(client.create_experiment(self.experiment_name, artifact_location=location))
        except Exception:
            # Another process created it between our read and our write.
            again = client.get_experiment_by_name(self.experiment_name)
            if again is None:
                raise
            return str(again.experiment_id)

    def _tagged_runs(self, experiment_id: str, dagster_run_id: str) -> list[Any]:
        runs = self._client().search_runs(
            [experiment_id], filter_string=f"tags.{DAGSTER_RUN_TAG} = '{dagster_run_id}'"
        )
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def start_or_get_run(self, dagster_run_id: str, run_name: str | None = None) -> str:
        """The MLflow run of this Dagster run (see the module docstring)."""
        experiment_id = self._experiment_id()
        existing = self._tagged_runs(experiment_id, dagster_run_id)
        if existing:
            return str(existing[0].info.run_id)
        client = self._client()
        created = client.create_run(
            experiment_id, run_name=run_name, tags={DAGSTER_RUN_TAG: dagster_run_id}
        )
        client.set_terminated(created.info.run_id)
        # A step that raced us may have created its run before ours but committed it after our
        # search: wait for concurrent creations to land, then all racers see the same set and
        # agree on the oldest. A creation slower than the pause can still leave two runs.
        time.sleep(RACE_SETTLE_S)
        winner = str(self._tagged_runs(experiment_id, dagster_run_id)[0].info.run_id)
        if winner != created.info.run_id:
            client.delete_run(created.info.run_id)
        return winner

    def log_training(
        self,
        pipeline: Pipeline,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        run_name: str,
        dagster_run_id: str | None = None,
        model_name: str = "model",
        alias: str | None = "challenger",
        extra_pipelines: Mapping[str, Pipeline] | None = None,
        input_example: pd.DataFrame | None = None,
    ) -> LoggedModel:
        """Log and register a trained pipeline (see the module docstring)."""
        import mlflow

        from bike_assets.ml.model import predict_counts

        # A progress bar for copying the model's files is noise in Dagster's logs and the demo
        # (setdefault: an operator's explicit choice stands).
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        mlflow.set_tracking_uri(self.tracking_uri)
        client = self._client()
        if dagster_run_id is not None:
            run_id = self.start_or_get_run(dagster_run_id, run_name)
        else:
            run_id = client.create_run(self._experiment_id(), run_name=run_name).info.run_id
        prefix = "" if model_name == "model" else f"{model_name}."
        rows = input_example if input_example is not None else example_rows(pipeline)
        # The MLflow model takes /predict's records (ISO strings): see ml/mlflow_model.py
        example = pd.DataFrame(
            {
                "counter_id": rows["counter_id"].astype(str).to_numpy(dtype=object),
                "timestamp": [pd.Timestamp(t).isoformat() for t in rows["timestamp"]],
            }
        )
        signature = mlflow.models.infer_signature(example, predict_counts(pipeline, rows))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            skops_file = save_pipeline(pipeline, work / f"{model_name}{ARTIFACT_SUFFIX}")
            shipped = stage_code(work / "code")
            for name, extra in (extra_pipelines or {}).items():
                save_pipeline(extra, work / "pipelines" / f"{name}{ARTIFACT_SUFFIX}")
            # `start_run(run_id=...)` resumes the run; leaving the block marks it FINISHED.
            with mlflow.start_run(run_id=run_id):
                mlflow.log_params({f"{prefix}{k}": str(v) for k, v in params.items()})
                mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items() if v == v})
                mlflow.set_tags(dict(tags))
                if extra_pipelines:
                    mlflow.log_artifacts(str(work / "pipelines"), artifact_path="pipelines")
                info = mlflow.pyfunc.log_model(
                    name=model_name,
                    python_model=module_file(MODEL_CODE_MODULE),
                    artifacts={PIPELINE_ARTIFACT: str(skops_file)},
                    code_paths=[str(shipped)],
                    pip_requirements=requirements(shipped.rglob("*.py")),
                    signature=signature,
                    input_example=example,
                )
        version = self._register(info, run_id)
        if alias:
            client.set_registered_model_alias(self.registered_model_name, alias, version)
        return LoggedModel(run_id=run_id, version=version, model_uri=info.model_uri)

    def _register(self, info: Any, run_id: str) -> str:
        """A new version of the registered model for a logged model. Through the client, not
        `log_model(registered_model_name=...)`, whose fluent path prints "Successfully
        registered..." / "Created version..." to stderr on every call (noise in the demo and
        in Dagster's captured logs)."""
        from mlflow.exceptions import MlflowException

        client = self._client()
        try:
            client.create_registered_model(self.registered_model_name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.create_model_version(
            self.registered_model_name, source=info.model_uri, run_id=run_id, model_id=info.model_id
        )
        return str(created.version)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Attach out-of-sample scores to a run; NaN is not a score."""
        client = self._client()
        for key, value in metrics.items():
            if value == value:
                client.log_metric(run_id, key, float(value))

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store `data` as an artifact of the run (JSON or YAML after the file's extension)."""
        self._client().log_dict(run_id, dict(data), artifact_file)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        """Tags on a version of the registered model (the decision, its reason, thresholds)."""
        client = self._client()
        for key, value in tags.items():
            client.set_model_version_tag(self.registered_model_name, version, key, str(value))

    def log_level_update(
        self, pipeline: Pipeline, *, of_version: str, level_as_of: str, dagster_run_id: str
    ) -> str:
        """Register the champion `of_version` with its recent level refreshed up to
        `level_as_of` as a version of its own (tagged with both), so that `@champion` keeps
        naming exactly what the API serves after a daily update. The caller moves the alias."""
        tags = {"level_update_of": of_version, "level_as_of": level_as_of}
        logged = self.log_training(
            pipeline,
            params={},
            metrics={},
            tags=tags,
            run_name=f"level-v{of_version}-{level_as_of}",
            dagster_run_id=dagster_run_id,
            alias=None,
        )
        self.tag_version(logged.version, tags)
        return logged.version

    def set_champion(self, version: str) -> None:
        self._client().set_registered_model_alias(self.registered_model_name, "champion", version)

    def server_url(self) -> str | None:
        """The MLflow UI's base URL when tracking goes to an http(s) server, else None. Any
        user:password in the tracking URI is dropped: the link is shown to every UI user."""
        return self.ui_url.rstrip("/") or ui_base_url(self.tracking_uri)

    def run_link(self, run_id: str) -> dg.MetadataValue:
        """The run in the MLflow UI (a URL) on a server; otherwise its artifact folder as a
        file:// URL (e.g. under $BIKE_DATA_DIR/mlartifacts with the default sqlite store: the
        model, the evaluated pipeline and the evaluation report are there), or the artifact URI
        as a path when it is not a local folder."""
        base = self.server_url()
        if base is not None:
            run = self._client().get_run(run_id)
            return dg.MetadataValue.url(
                f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
            )
        artifact_uri = str(self._client().get_run(run_id).info.artifact_uri)
        folder = local_path(artifact_uri)
        if folder.startswith("/"):
            return dg.MetadataValue.url(Path(folder).resolve().as_uri())
        return dg.MetadataValue.path(folder)

    def model_version_link(self, version: str) -> dg.MetadataValue:
        """The registered version in the MLflow UI (a URL) on a server; otherwise the URI that
        `mlflow.pyfunc.load_model` takes (`models:/bike-counts/<version>`)."""
        base = self.server_url()
        if base is not None:
            return dg.MetadataValue.url(
                f"{base}/#/models/{quote(self.registered_model_name)}/versions/{version}"
            )
        try:  # without a server: the folder of the run that logged the version
            run_id = self._client().get_model_version(self.registered_model_name, version).run_id
        except Exception:  # an unknown version or an unreachable store: the URI still says it
            run_id = None
        if run_id:
            return self.run_link(run_id)
        return dg.MetadataValue.path(f"models:/{self.registered_model_name}/{version}")


def ui_base_url(tracking_uri: str) -> str | None:
    """`scheme://host[:port][/path]` of an http(s) tracking URI, without credentials or query;
    None for a local store (sqlite, file)."""
    parts = urlsplit(tracking_uri.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def local_path(uri: str) -> str:
    """A file:// URI as a plain path (what the UI shows with a copy button); others as they are."""
    parts = urlsplit(uri)
    return unquote(parts.path) if parts.scheme == "file" else uri


def example_rows(pipeline: Pipeline, now: datetime | None = None) -> pd.DataFrame:
    """Raw pipeline input: two counters the pipeline knows x three hours from the current UTC
    hour (tz-aware)."""
    from bike_assets.ml.model import known_counters

    counters = known_counters(pipeline)[:2]
    start = pd.Timestamp(now or datetime.now(UTC)).tz_convert("UTC").floor("h")
    hours = pd.date_range(start, periods=3, freq="h")
    return pd.DataFrame(
        {
            "counter_id": [c for c in counters for _ in hours],
            "timestamp": list(hours) * len(counters),
        }
    )


def module_file(module: str) -> str:
    """The source file of `module`, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    return spec.origin


def _module_imports(path: Path) -> set[str]:
    """Modules imported at module level (imports inside functions are optional paths, e.g.
    google.cloud for gs:// URIs, and not needed to load and predict)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def stage_code(target: Path) -> Path:
    """Copy what the MLflow model needs of this project into `target/bike_assets` and return
    that directory: every module of `bike_assets.ml` (a pipeline may hold any class defined
    there) and the `bike_assets` modules they import, with empty package `__init__`s (the real
    `bike_assets/__init__.py` is empty today, but must not pull Dagster in if that changes)."""
    package_dir = Path(module_file("bike_assets")).parent
    wanted = set((package_dir / "ml").glob("*.py"))
    todo = list(wanted)
    while todo:
        for name in _module_imports(todo.pop()):
            if name.split(".")[0] != "bike_assets":
                continue
            origin = Path(module_file(name))
            if origin.name == "__init__.py" or origin in wanted:
                continue
            wanted.add(origin)
            todo.append(origin)
    root = target / "bike_assets"
    for source in wanted:
        copy = root / source.relative_to(package_dir)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, copy)
    for folder in {root, *(p.parent for p in root.rglob("*.py"))}:
        (folder / "__init__.py").touch()
    return root


def requirements(files: Iterable[Path]) -> list[str]:
    """`dist==version` for every third-party distribution the files import at module level.
    MLflow adds its own pin; this project (`bike_assets`) travels as code, not as a package."""
    distributions = importlib.metadata.packages_distributions()
    pins: set[str] = set()
    for path in files:
        for module in _module_imports(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in {"bike_assets", "mlflow", "__future__"}:
                continue
            candidates = distributions.get(top, [])
            if not candidates:
                raise ModuleNotFoundError(f"{path.name} imports {top}, which no package provides")
            for dist in candidates:
                pins.add(f"{dist}=={importlib.metadata.version(dist)}")
    return sorted(pins)
