"""The model artifact: one sklearn `Pipeline` from raw `(counter_id, timestamp)` to counts.

Default (`kind="hgb"`): `ForecastFeatures` -> `RecentLevelRegressor` (HistGradientBoosting with
a Poisson loss, its prediction blended with the counter's recent level), fitted on the last
half-year with recency weights; month/day-of-year features and the blend weight are chosen on a
time-based hold-out (`fit_with_selection`). `random_forest` and `mlp`: the same features into
the original system's two model families.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from bike_assets.ml.features import (
    COUNTER_FEATURE,
    FORECAST_FEATURE_NAMES,
    INPUT_COLUMNS,
    AnnualMode,
    ForecastFeatures,
    outage_days,
    utc_hours,
)
from bike_assets.ml.metrics import score

ModelKind = Literal["hgb", "random_forest", "mlp"]
Target = Literal["poisson", "log1p"]


@dataclass(frozen=True)
class ModelParams:
    """Hyperparameters, settable from the `challenger_model` run config.

    Fixed defaults were chosen by time-based validation inside training periods of the Paris
    data, never on a test window; the data-dependent ones (`annual`, `blend`) are chosen per
    fit on the last weeks of the training rows (`fit_with_selection`). How the result compares
    with a plain gradient boosting, the original system and the naive, per window and week by
    week: `bench/model_quality.py`, figures in BENCHMARKS.md (none are quoted here: they go
    stale when the data or the code moves).
    """

    kind: ModelKind = "hgb"
    # hgb: small trees, few iterations (larger ones were not better and cost 2.5x the fit);
    # random_forest / mlp: the original system's two families, for comparison
    learning_rate: float = 0.1
    max_iter: int = 100
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    n_estimators: int = 100
    max_depth: int | None = 20
    random_state: int = 0
    # recent level (ForecastFeatures): weeks of the seasonal-naive window, and the gap between
    # that window and a training row's week
    level_weeks: int = 4
    level_gap_weeks: int = 0
    # month / day-of-year: "auto" lets the hold-out choose "raw" or "none" (whether last year's
    # calendar carries over depends on the year: a lockdown autumn does not)
    annual: AnnualMode = "auto"
    # sample weight 0.5 ** (age / half-life): the recent weeks say more about the next ones than
    # the lockdown of 2020 does (a 90-day half-life, letting last year's calendar weigh more,
    # was worse on the August drop)
    half_life_days: float | None = 28.0
    # leave out of the fit the counter-days at 0 in total (sensor outages; the level tables
    # always leave them out). Kept by default: a missing recent level then tells the trees that
    # the sensor may still be down.
    drop_outages: bool = False
    # fit on the last `history_days` only: with a 28-day half-life, rows older than half a
    # year weigh < 2 %, but cost as much to fit as recent ones
    history_days: int | None = 182
    # OpenMP threads of the fit (None: as many as CPUs). One: HistGradientBoosting's parallel
    # regions are short at this size, and on a shared CPU (other Dagster steps, other jobs)
    # every barrier waits for a descheduled thread. Predictions are not limited here.
    fit_threads: int | None = 1
    # hgb: prediction = blend * model + (1 - blend) * recent level; `fit_with_selection`
    # replaces it with the hold-out's choice among BLEND_GRID
    blend: float = 0.5
    offset: bool = False  # hgb learns a correction of the recent level, not the count
    ignore_features: tuple[str, ...] = ()  # hgb: features made constant (for ablations)


def _column(name: str) -> int:
    return FORECAST_FEATURE_NAMES.index(name)


class RecentLevelRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """A regressor anchored on the recent level, i.e. the seasonal-naive forecast.

    baseline = the "recent_level" feature (or, where the recent weeks have no data, the
    counter's whole-history "profile_level"). The inner regressor learns the count (Poisson loss,
    or squared error on log1p) or, with `offset`, a correction of the baseline: Poisson loss on
    y / (baseline + 1) weighted by (baseline + 1), which is a Poisson model with
    log(baseline + 1) as offset, or squared error on log1p(y) - log1p(baseline). The prediction
    is `blend * model + (1 - blend) * baseline`.

    Why the blend: the 4-week median is hard to beat (Paris traffic in 2020-21 changed regime
    every few weeks: lockdown, curfews, reopenings, and the weather moves whole days), and
    what the trees learn from the past year partly does not carry over (e.g. a holiday effect
    learned from Christmas). Their errors and the naive's are only partly correlated, so a
    weighted average beats both; the weight is chosen per fit on a time-based hold-out.
    """

    def __init__(
        self,
        regressor: Any = None,
        target: Target = "poisson",
        offset: bool = False,
        blend: float = 0.5,
        ignore: tuple[str, ...] = (),
    ) -> None:
        self.regressor = regressor
        self.target = target
        self.offset = offset
        self.blend = blend
        self.ignore = ignore

    @staticmethod
    def baseline(x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The recent level, else the profile, else NaN (no level learned: `NO_LEVEL`)."""
        level = x[:, _column("recent_level")]
        profile = x[:, _column("profile_level")]
        base = np.where(np.isfinite(level), level, profile)
        return np.where(base >= 0.0, base, np.nan)  # NaN >= 0 is False: NaN stays NaN

    def _inner(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """The features the inner regressor sees: the ignored ones become a constant."""
        if not self.ignore:
            return x
        x = x.copy()
        x[:, [_column(name) for name in self.ignore]] = 0.0
        return x

    def fit(self, x: Any, y: Any, sample_weight: Any = None) -> RecentLevelRegressor:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
        base = np.nan_to_num(self.baseline(x), nan=0.0)  # no baseline: an offset of 0
        inner = self._inner(x)
        self.regressor_ = clone(self.regressor)
        if self.offset and self.target == "poisson":
            self.regressor_.fit(inner, y / (base + 1.0), sample_weight=w * (base + 1.0))
        elif self.offset:
            self.regressor_.fit(inner, np.log1p(y) - np.log1p(base), sample_weight=w)
        elif self.target == "poisson":
            self.regressor_.fit(inner, y, sample_weight=w)
        else:
            self.regressor_.fit(inner, np.log1p(y), sample_weight=w)
        return self

    def predict(self, x: Any) -> NDArray[np.float64]:
        x = np.asarray(x, dtype=np.float64)
        known = self.baseline(x)
        base = np.nan_to_num(known, nan=0.0)
        f = np.asarray(self.regressor_.predict(self._inner(x)), dtype=np.float64)
        if self.offset and self.target == "poisson":
            pred = (base + 1.0) * f
        elif self.offset:
            pred = np.expm1(np.log1p(base) + f)
        elif self.target == "poisson":
            pred = f
        else:
            pred = np.expm1(f)
        blended = self.blend * pred + (1.0 - self.blend) * base
        out = np.where(np.isnan(known), pred, blended)
        # expm1 of a log below 0 is below 0: a count is not, whatever the estimator says.
        return np.asarray(np.clip(out, 0.0, None), dtype=np.float64)


def build_pipeline(params: ModelParams, target: Target = "poisson") -> Pipeline:
    """An unfitted pipeline. `target` matters for `hgb` only (Poisson loss or a log1p target)."""
    model: Any
    if params.kind == "mlp":
        model = mlp_regressor(params)
    elif params.kind == "random_forest":
        model = RandomForestRegressor(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=2,
            n_jobs=-1,
            random_state=params.random_state,
        )
    else:
        hgb = HistGradientBoostingRegressor(
            loss="poisson" if target == "poisson" else "squared_error",
            learning_rate=params.learning_rate,
            max_iter=params.max_iter,
            max_leaf_nodes=params.max_leaf_nodes,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            categorical_features=[COUNTER_FEATURE],
            early_stopping=False,
            random_state=params.random_state,
        )
        model = RecentLevelRegressor(
            hgb,
            target=target,
            offset=params.offset,
            blend=params.blend,
            ignore=params.ignore_features,
        )
    features = ForecastFeatures(
        level_weeks=params.level_weeks,
        level_gap_weeks=params.level_gap_weeks,
        annual=params.annual,
    )
    return Pipeline([("features", features), ("model", model)])


def mlp_regressor(params: ModelParams) -> Any:
    """The original system's second family, a small neural net, on the same features: the
    counter one-hot (the original's embedding, at this size), the rest standardized, missing
    levels imputed (with a flag), a log1p target (the net then fits relative errors)."""
    one_hot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    numeric = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler()),
        ]
    )
    columns = ColumnTransformer(
        [
            ("counter", one_hot, [COUNTER_FEATURE]),
            ("numeric", numeric, [i for i in range(len(FORECAST_FEATURE_NAMES)) if i]),
        ]
    )
    net = MLPRegressor(
        hidden_layer_sizes=(64, 32),
        learning_rate_init=1e-3,
        max_iter=params.max_iter,
        early_stopping=True,  # its validation fraction is the LAST rows: time-ordered input
        random_state=params.random_state,
    )
    return TransformedTargetRegressor(
        regressor=Pipeline([("columns", columns), ("net", net)]),
        func=np.log1p,
        inverse_func=np.expm1,
        check_inverse=False,
    )


def training_rows(train: pd.DataFrame, params: ModelParams) -> pd.DataFrame:
    """The rows a model learns from: the last `history_days`, without sensor outages when
    `drop_outages`."""
    if train.empty:
        return train
    rows = train
    if params.history_days is not None:
        start = rows["timestamp"].max() - pd.Timedelta(days=params.history_days)
        rows = rows.loc[rows["timestamp"] > start]
    if params.drop_outages:
        rows = rows.loc[~outage_days(rows)]
    return rows


def recency_weights(timestamps: Any, half_life_days: float | None) -> NDArray[np.float64] | None:
    """0.5 ** (age in days / half-life), age counted from the latest timestamp; None: equal."""
    if half_life_days is None:
        return None
    hours = utc_hours(timestamps)
    if len(hours) == 0:
        return np.ones(0)
    return np.asarray(0.5 ** ((hours.max() - hours) / 24.0 / half_life_days), dtype=np.float64)


def fit_pipeline(pipeline: Pipeline, train: pd.DataFrame, params: ModelParams) -> Pipeline:
    """Fit `pipeline` on `train` (columns counter_id, timestamp, count) as `params` say:
    outage days left out, recency weights on the model step."""
    rows = training_rows(train, params)
    kwargs: dict[str, Any] = {}
    weights = recency_weights(rows["timestamp"], params.half_life_days)
    if weights is not None and params.kind != "mlp":  # the net's pipeline takes no weights
        kwargs["model__sample_weight"] = weights
    with _fit_threads(params):
        return pipeline.fit(rows.loc[:, INPUT_COLUMNS], rows["count"], **kwargs)


def _fit_threads(params: ModelParams) -> AbstractContextManager[Any]:
    if params.fit_threads is None:
        return nullcontext()
    return threadpool_limits(limits=params.fit_threads, user_api="openmp")


def predict_counts(pipeline: Pipeline, frame: pd.DataFrame) -> NDArray[np.float64]:
    """Predictions as non-negative floats (a count cannot be negative)."""
    pred = np.asarray(pipeline.predict(frame.loc[:, INPUT_COLUMNS]), dtype=np.float64)
    return np.clip(pred, 0.0, None)


@dataclass(frozen=True)
class FitResult:
    pipeline: Pipeline
    target: Target
    validation: dict[str, dict[str, float]]
    # the parameters the pipeline was fitted with, choices made: what `refit` reuses
    params: ModelParams = ModelParams()


BLEND_GRID = (0.25, 0.5, 0.75, 1.0)


def fit_with_selection(
    train: pd.DataFrame, params: ModelParams, validation_days: int = 28
) -> FitResult:
    """Fit the model, its data-dependent choices made on a time-based hold-out: the last
    `validation_days` of `train` (never a test window; a quarter of `train` at most). Four
    weeks: on the Paris data two weeks chose month/day-of-year features wrongly in two windows
    of four (a single regime-change fortnight decides), four weeks did not (bench/model_quality).

    For `hgb` with `annual="auto"`: month / day-of-year features on or off (`raw` vs `none`;
    whether last year's calendar carries over depends on the history, e.g. a lockdown year
    does not), and the blend weight between the trees and the recent level (a grid; free, as
    the blend is applied after the fit). Then the chosen procedure is refitted on all of
    `train`. The hold-out is scored without outage days when `params.drop_outages`.
    """
    chosen, scores = params, dict[str, dict[str, float]]()
    if params.kind == "hgb":
        # a quarter of the history at most: a first month keeps three weeks to learn from
        span_days = (train["timestamp"].max() - train["timestamp"].min()).days
        days = min(validation_days, max(1, span_days // 4))
        cut = train["timestamp"].max() - pd.Timedelta(days=days)
        fit_part, val_part = train[train["timestamp"] <= cut], train[train["timestamp"] > cut]
        val_part = val_part[val_part["counter_id"].isin(set(fit_part["counter_id"].unique()))]
        if params.drop_outages and len(val_part):
            val_part = val_part.loc[~outage_days(val_part)]
        if len(fit_part) and len(val_part):
            chosen, scores = _select(fit_part, val_part, params)
        elif params.annual == "auto":
            chosen = replace(params, annual="none")
    target: Target = "poisson"
    pipeline = fit_pipeline(build_pipeline(chosen, target), train, chosen)
    return FitResult(pipeline=pipeline, target=target, validation=scores, params=chosen)


def refit(fit: FitResult, train: pd.DataFrame) -> Pipeline:
    """The same procedure (same choices) fitted on other rows: the served artifact is the
    evaluated procedure refitted on all data up to the last complete day."""
    return fit_pipeline(build_pipeline(fit.params, fit.target), train, fit.params)


def _select(
    fit_part: pd.DataFrame, val_part: pd.DataFrame, params: ModelParams
) -> tuple[ModelParams, dict[str, dict[str, float]]]:
    """The (annual, blend) pair with the lowest hold-out RMSE, and every candidate's scores."""
    annual_modes: list[AnnualMode] = ["raw", "none"] if params.annual == "auto" else [params.annual]
    rows = training_rows(fit_part, params)
    weights = recency_weights(rows["timestamp"], params.half_life_days)
    y_val = val_part["count"].to_numpy(dtype=np.float64)
    scores: dict[str, dict[str, float]] = {}
    best: tuple[float, ModelParams] | None = None
    with _fit_threads(params):
        for annual in annual_modes:
            candidate = replace(params, annual=annual)
            pipeline = build_pipeline(candidate)
            features, model = pipeline.named_steps["features"], pipeline.named_steps["model"]
            x_fit = features.fit_transform(rows.loc[:, INPUT_COLUMNS], rows["count"])
            model.fit(x_fit, rows["count"].to_numpy(dtype=np.float64), sample_weight=weights)
            x_val = features.transform(val_part.loc[:, INPUT_COLUMNS])
            for blend in BLEND_GRID:
                model.blend = blend
                s = score(y_val, model.predict(x_val))
                scores[f"annual_{annual}_blend_{blend}"] = s
                if best is None or s["rmse"] < best[0]:
                    best = (s["rmse"], replace(candidate, blend=blend))
    assert best is not None
    return best[1], scores


def known_counters(pipeline: Pipeline) -> list[str]:
    """The counters a model answers for: those its first step (features, or the naive's
    table) learned at fit."""
    return [str(c) for c in pipeline.steps[0][1].counters_]


def save_pipeline(pipeline: Pipeline, path: Path) -> Path:
    """Atomic write of the model file (skops, never pickle): see ml/artifact.py."""
    from bike_assets.ml import artifact

    return artifact.save_pipeline(pipeline, path)


def load_pipeline(path: Path | str) -> Pipeline:
    """Read a model file, trusting only skops' defaults and this project's types."""
    from bike_assets.ml import artifact

    return artifact.load_pipeline(path)


def load_pipeline_uri(uri: str) -> Pipeline:
    """Load a model artifact from a local path (or file:// URI) or a gs:// object."""
    from bike_assets.ml import artifact

    return artifact.load_pipeline_uri(uri)
