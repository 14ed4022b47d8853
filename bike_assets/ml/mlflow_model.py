"""The MLflow model of `bike-counts`, logged as "models from code": this file is the model.

MLflow copies this file into the logged model and runs it when the model is loaded, so nothing
is pickled. `load_context` reads the skops pipeline shipped as the artifact `pipeline` (with the
trusted types of `bike_assets.ml.artifact`); `predict` calls `predict_counts`, the function the
server answers `/predict` with, so `mlflow.pyfunc.load_model("models:/bike-counts@champion")`
predicts the numbers the API serves for the same rows.

Input: the records of a `/predict` body as a DataFrame: `counter_id` (str) and `timestamp` (str,
ISO 8601; without an offset it is Paris time), read like the API reads them, for the hour that
contains them. Strings, not datetimes: MLflow's schema accepts only tz-naive datetime columns,
and a naive time would be ambiguous (UTC for MLflow, Paris for the API). Output: predicted counts
(float64, never negative), in input order.

Imported only by MLflow (this module registers its model with `mlflow.models.set_model` when it
is imported); the tracking resource names it by path.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from numpy.typing import NDArray

from bike_assets.ml.artifact import load_pipeline
from bike_assets.ml.model import predict_counts
from bike_assets.settings import PARIS_TZ

PIPELINE_ARTIFACT = "pipeline"


def _utc_hours(texts: Iterable[str]) -> pd.Series:
    """The UTC hour containing each ISO 8601 timestamp, read exactly as the API reads request
    timestamps (`bike_serving/timestamps.py`): `datetime.fromisoformat`, naive = Paris wall-clock
    time with Python's DST rules; the model's features are hourly, so the API answers for the
    containing hour."""
    paris = ZoneInfo(PARIS_TZ)
    instants = (datetime.fromisoformat(t) for t in texts)
    seconds = [
        (d if d.tzinfo is not None else d.replace(tzinfo=paris)).timestamp() for d in instants
    ]
    hours = np.floor(np.asarray(seconds, dtype=np.float64) / 3600).astype(np.int64)
    return pd.Series(pd.to_datetime(hours * 3600, unit="s", utc=True))


class BikeCountsModel(PythonModel):  # type: ignore[misc]
    def load_context(self, context: Any) -> None:
        self.pipeline = load_pipeline(context.artifacts[PIPELINE_ARTIFACT])

    # `pd.DataFrame` as hint: MLflow validates the input against the logged signature instead
    # of inferring a schema from the hint (and does not warn)
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: Any = None
    ) -> NDArray[np.float64]:
        frame = pd.DataFrame(
            {
                "counter_id": model_input["counter_id"].astype(str).to_numpy(dtype=object),
                "timestamp": _utc_hours(model_input["timestamp"].astype(str)),
            }
        )
        return predict_counts(self.pipeline, frame)


mlflow.models.set_model(BikeCountsModel())
