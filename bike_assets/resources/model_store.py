"""Where model files live: `BIKE_DATA_DIR/models` locally, a GCS prefix on GCP.

The served artifact is this file (a sklearn Pipeline, `bike_assets.ml.artifact`'s format), so
serving never needs MLflow.
`save` returns a URI relative to the store root with the file's sha256
(`models/v12/model.skops#sha256=...`); `load` resolves it inside the root and checks the
digest before deserializing (see `bike_assets.ml.model_files`).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from sklearn.pipeline import Pipeline

from bike_assets.ml.artifact import ARTIFACT_SUFFIX
from bike_assets.ml.model import load_pipeline, save_pipeline
from bike_assets.ml.model_files import load_artifact, recorded_uri, save_artifact

DEFAULT_NAME = f"model{ARTIFACT_SUFFIX}"


def artifact_path(version: str, name: str = DEFAULT_NAME) -> str:
    """The store-relative path of a version's file (several files per version by `name`)."""
    return f"models/v{version}/{name}"


class ModelStore(dg.ConfigurableResource):  # type: ignore[misc]
    root: str = Field(description="A local directory or gs://bucket/prefix for model files.")

    def uri_for(self, version: str, name: str = DEFAULT_NAME) -> str:
        """The URI of an already saved file, with the digest recorded when it was saved."""
        return recorded_uri(self.root, artifact_path(version, name))

    def save(self, pipeline: Pipeline, version: str, name: str = DEFAULT_NAME) -> str:
        return save_artifact(
            self.root, artifact_path(version, name), lambda path: save_pipeline(pipeline, path)
        )

    def load(self, uri: str) -> Pipeline:
        return load_artifact(self.root, uri, load_pipeline)
