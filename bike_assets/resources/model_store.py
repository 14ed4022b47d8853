"""Where model files live: `BIKE_DATA_DIR/models` locally, a GCS prefix on GCP.

The served artifact is this file (a joblib'd sklearn Pipeline), so serving never needs MLflow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field
from sklearn.pipeline import Pipeline

from bike_assets.ml.model import load_pipeline_uri, save_pipeline


class ModelStore(dg.ConfigurableResource):  # type: ignore[misc]
    root: str = Field(description="A local directory or gs://bucket/prefix for model files.")

    def uri_for(self, version: str) -> str:
        if self.root.startswith("gs://"):
            return f"{self.root.rstrip('/')}/models/v{version}/model.joblib"
        return str(Path(self.root) / "models" / f"v{version}" / "model.joblib")

    def save(self, pipeline: Pipeline, version: str) -> str:
        uri = self.uri_for(version)
        if uri.startswith("gs://"):
            from google.cloud import storage

            bucket, _, name = uri.removeprefix("gs://").partition("/")
            with tempfile.TemporaryDirectory() as tmp:
                local = save_pipeline(pipeline, Path(tmp) / "model.joblib")
                storage.Client().bucket(bucket).blob(name).upload_from_filename(str(local))
            return uri
        save_pipeline(pipeline, Path(uri))
        return uri

    def load(self, uri: str) -> Pipeline:
        return load_pipeline_uri(uri)
