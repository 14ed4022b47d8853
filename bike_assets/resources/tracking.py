"""MLflow through a small typed resource (dagster-mlflow is still a legacy `@resource`).

Registry aliases, not stages: `challenger` names the latest trained model, `champion` follows
the champion pointer (the pointer stays the source of truth the server reads).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field
from sklearn.pipeline import Pipeline

from bike_assets.settings import REGISTERED_MODEL_NAME


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

    def _client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def _experiment_id(self) -> str:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        found = mlflow.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        location = self.artifact_location or None
        if location and "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        try:
            return str(mlflow.create_experiment(self.experiment_name, artifact_location=location))
        except Exception:
            # Another process created it between our read and our write.
            again = mlflow.get_experiment_by_name(self.experiment_name)
            if again is None:
                raise
            return str(again.experiment_id)

    def log_training(
        self,
        pipeline: Pipeline,
        *,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        run_name: str,
    ) -> LoggedModel:
        """One MLflow run per training: params, metrics, the model logged and registered."""
        import mlflow

        # Requirement inference would pip-resolve the environment on every run: slow and
        # offline-hostile. The artifact needs this project installed anyway (its features).
        os.environ.setdefault("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            mlflow.log_params({k: str(v) for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            mlflow.set_tags(dict(tags))
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                registered_model_name=self.registered_model_name,
                pip_requirements=["scikit-learn", "pandas", "holidays", "bike-traffic"],
                serialization_format="pickle",
            )
        version = str(info.registered_model_version)
        self._client().set_registered_model_alias(self.registered_model_name, "challenger", version)
        return LoggedModel(run_id=run.info.run_id, version=version, model_uri=info.model_uri)

    def set_champion(self, version: str) -> None:
        self._client().set_registered_model_alias(self.registered_model_name, "champion", version)

    def champion_version(self) -> str | None:
        try:
            mv = self._client().get_model_version_by_alias(self.registered_model_name, "champion")
        except Exception:
            return None
        return str(mv.version)

    def log_metrics(self, run_id: str, metrics: Mapping[str, float]) -> None:
        """Attach out-of-sample scores to the training run that produced the model."""
        client = self._client()
        for key, value in metrics.items():
            if value == value:  # NaN is not a score
                client.log_metric(run_id, key, float(value))
