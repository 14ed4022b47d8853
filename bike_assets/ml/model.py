"""The model artifact: one sklearn `Pipeline` from raw `(counter_id, timestamp)` to counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline

from bike_assets.ml.features import COUNTER_FEATURE, INPUT_COLUMNS, CalendarFeatures
from bike_assets.ml.metrics import score

ModelKind = Literal["hgb", "random_forest"]
Target = Literal["poisson", "log1p"]


@dataclass(frozen=True)
class ModelParams:
    """Hyperparameters, settable from the `challenger_model` run config."""

    kind: ModelKind = "hgb"
    learning_rate: float = 0.1
    max_iter: int = 300
    max_leaf_nodes: int = 63
    min_samples_leaf: int = 40
    l2_regularization: float = 0.0
    n_estimators: int = 100
    max_depth: int | None = 20
    random_state: int = 0


def build_pipeline(params: ModelParams, target: Target = "poisson") -> Pipeline:
    """An unfitted pipeline. `target` matters for `hgb` only (Poisson loss or a log1p target)."""
    model: Any
    if params.kind == "random_forest":
        model = RandomForestRegressor(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=2,
            n_jobs=-1,
            random_state=params.random_state,
        )
    else:
        hgb_kwargs: dict[str, Any] = {
            "learning_rate": params.learning_rate,
            "max_iter": params.max_iter,
            "max_leaf_nodes": params.max_leaf_nodes,
            "min_samples_leaf": params.min_samples_leaf,
            "l2_regularization": params.l2_regularization,
            "categorical_features": [COUNTER_FEATURE],
            "early_stopping": False,
            "random_state": params.random_state,
        }
        if target == "poisson":
            model = HistGradientBoostingRegressor(loss="poisson", **hgb_kwargs)
        else:
            model = TransformedTargetRegressor(
                regressor=HistGradientBoostingRegressor(**hgb_kwargs),
                func=np.log1p,
                inverse_func=np.expm1,
                check_inverse=False,
            )
    return Pipeline([("features", CalendarFeatures()), ("model", model)])


def predict_counts(pipeline: Pipeline, frame: pd.DataFrame) -> NDArray[np.float64]:
    """Predictions as non-negative floats (a count cannot be negative)."""
    pred = np.asarray(pipeline.predict(frame.loc[:, INPUT_COLUMNS]), dtype=np.float64)
    return np.clip(pred, 0.0, None)


@dataclass(frozen=True)
class FitResult:
    pipeline: Pipeline
    target: Target
    validation: dict[str, dict[str, float]]


def fit_with_target_selection(
    train: pd.DataFrame, params: ModelParams, validation_days: int = 7
) -> FitResult:
    """Fit the model; for `hgb`, choose Poisson loss vs log1p target on the last
    `validation_days` of `train` (a time-based hold-out), then refit on all of `train`."""
    targets: list[Target] = ["poisson", "log1p"] if params.kind == "hgb" else ["poisson"]
    scores: dict[str, dict[str, float]] = {}
    chosen: Target = targets[0]
    if len(targets) > 1:
        cut = train["timestamp"].max() - pd.Timedelta(days=validation_days)
        fit_part, val_part = train[train["timestamp"] <= cut], train[train["timestamp"] > cut]
        known = set(fit_part["counter_id"].unique())
        val_part = val_part[val_part["counter_id"].isin(known)]
        if len(fit_part) and len(val_part):
            for target in targets:
                candidate = build_pipeline(params, target).fit(
                    fit_part.loc[:, INPUT_COLUMNS], fit_part["count"]
                )
                scores[target] = score(val_part["count"], predict_counts(candidate, val_part))
            chosen = min(targets, key=lambda t: scores[t]["rmse"])
    pipeline = build_pipeline(params, chosen).fit(train.loc[:, INPUT_COLUMNS], train["count"])
    return FitResult(pipeline=pipeline, target=chosen, validation=scores)


def known_counters(pipeline: Pipeline) -> list[str]:
    return [str(c) for c in pipeline.named_steps["features"].counters_]


def save_pipeline(pipeline: Pipeline, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    joblib.dump(pipeline, tmp)
    tmp.replace(path)
    return path


def load_pipeline(path: Path | str) -> Pipeline:
    loaded = joblib.load(path)  # noqa: S301 - artifacts are written by this platform only
    if not isinstance(loaded, Pipeline):
        raise TypeError(f"{path} does not hold a sklearn Pipeline")
    return loaded


def load_pipeline_uri(uri: str) -> Pipeline:
    """Load a model artifact from a local path (or file:// URI) or a gs:// object."""
    if uri.startswith("gs://"):
        import tempfile

        from google.cloud import storage

        bucket, _, name = uri.removeprefix("gs://").partition("/")
        with tempfile.NamedTemporaryFile(suffix=".joblib") as tmp:
            storage.Client().bucket(bucket).blob(name).download_to_filename(tmp.name)
            return load_pipeline(tmp.name)
    return load_pipeline(uri.removeprefix("file://"))
