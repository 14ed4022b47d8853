"""The seasonal-naive baseline every evaluation must beat, as a real model.

Forecast = the median count of the same counter at the same Paris hour-of-week over the
`weeks` weeks before the forecast origin. `SeasonalNaive` is that rule as a scikit-learn
estimator (fitted state = the counter x hour-of-week table of the last weeks of its training
data), so the baseline can be scored, logged, registered and served like any champion: when it
beats the challenger and no better champion exists, it is what the platform serves.
`seasonal_naive(history, test)` is the same estimator fitted on the weeks before `test` starts:
the evaluation's baseline and the served naive share one definition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.pipeline import Pipeline

from bike_assets.ml.features import INPUT_COLUMNS, UnknownCounterError, calendar_frame, to_utc

HISTORY_WEEKS = 4
WEEK_HOURS = 168


class SeasonalNaive(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Counter x Paris hour-of-week median over the last `weeks` weeks of the training data.

    Takes the raw request frame `(counter_id, timestamp)`, like the challenger's pipeline.
    Cells without data in those weeks fall back to the counter's median over the same weeks,
    then to the median of all counters, so it always answers. `counters_` are all the counters
    of the training data (a counter silent in the last weeks gets the overall median); any
    other counter raises `UnknownCounterError`, never a silent guess.
    """

    def __init__(self, weeks: int = HISTORY_WEEKS) -> None:
        self.weeks = weeks

    def fit(self, X: pd.DataFrame, y: Any) -> SeasonalNaive:
        counters = X["counter_id"].astype(str).to_numpy()
        timestamps = to_utc(X["timestamp"])
        self.counters_ = np.array(sorted(set(counters)), dtype=object)
        values = np.asarray(y, dtype=np.float64)
        self.table_ = np.full((len(self.counters_), WEEK_HOURS), np.nan)
        self.counter_median_ = np.full(len(self.counters_), np.nan)
        self.overall_median_ = 0.0
        if not len(values):
            return self
        origin = timestamps.max() + pd.Timedelta(hours=1)  # where its forecasts start
        recent = np.asarray(timestamps >= origin - pd.Timedelta(weeks=self.weeks))
        if not recent.any():
            return self
        frame = pd.DataFrame(
            {
                "code": np.searchsorted(self.counters_, counters[recent]),
                "how": calendar_frame(timestamps[recent])["hour_of_week"].to_numpy(np.int64),
                "count": values[recent],
            }
        )
        cell = frame.groupby(["code", "how"])["count"].median()
        self.table_[
            cell.index.get_level_values(0).to_numpy(), cell.index.get_level_values(1).to_numpy()
        ] = cell.to_numpy()
        per_counter = frame.groupby("code")["count"].median()
        self.counter_median_[per_counter.index.to_numpy()] = per_counter.to_numpy()
        self.overall_median_ = float(frame["count"].median())
        return self

    def predict(self, X: pd.DataFrame) -> NDArray[np.float64]:
        return self._predict(X, unknown="raise")

    def _predict(self, X: pd.DataFrame, unknown: str) -> NDArray[np.float64]:
        counters = X["counter_id"].astype(str).to_numpy()
        if not len(counters):
            return np.empty(0, dtype=np.float64)
        codes = np.searchsorted(self.counters_, counters)
        codes = np.minimum(codes, max(len(self.counters_) - 1, 0))
        known = (
            self.counters_[codes] == counters
            if len(self.counters_)
            else np.zeros(len(counters), bool)
        )
        if unknown == "raise" and not known.all():
            raise UnknownCounterError(counters[~known])
        how = calendar_frame(X["timestamp"])["hour_of_week"].to_numpy(np.int64)
        pred = np.full(len(counters), np.nan)
        if len(self.counters_):
            pred = np.where(known, self.table_[codes, how], np.nan)
            pred = np.where(np.isnan(pred) & known, self.counter_median_[codes], pred)
        return np.asarray(np.nan_to_num(pred, nan=self.overall_median_), dtype=np.float64)


def naive_pipeline(weeks: int = HISTORY_WEEKS) -> Pipeline:
    """The naive as a servable artifact: one step, same input columns as the challenger's."""
    return Pipeline([("model", SeasonalNaive(weeks=weeks))])


def fit_naive(history: pd.DataFrame, weeks: int = HISTORY_WEEKS) -> Pipeline:
    """A naive pipeline fitted on `history` (its forecasts start after the last hour of it)."""
    return naive_pipeline(weeks).fit(history.loc[:, INPUT_COLUMNS], history["count"])


def seasonal_naive(
    history: pd.DataFrame, test: pd.DataFrame, weeks: int = HISTORY_WEEKS
) -> NDArray[np.float64]:
    """Predictions for `test` rows from the `history` rows in the `weeks` before `test` starts.

    Counters absent from those weeks get the median of all counters, so the baseline always
    answers (and is never flattered by NaNs).
    """
    if test.empty:
        return np.empty(0, dtype=np.float64)
    start = test["timestamp"].min()
    # the weeks are counted back from `test`'s start, whatever `history` holds after it
    window = history[
        (history["timestamp"] < start) & (history["timestamp"] >= start - pd.Timedelta(weeks=weeks))
    ]
    if window.empty:
        return np.zeros(len(test), dtype=np.float64)
    model = SeasonalNaive(weeks=weeks).fit(window.loc[:, INPUT_COLUMNS], window["count"])
    return model._predict(test.loc[:, INPUT_COLUMNS], unknown="fallback")
