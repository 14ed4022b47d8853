"""The champion's forecasts for every known counter and hour of the next days, in memory.

Built with ONE call of the champion's own pipeline (`predict_counts`) at load time, so a cached
number is the artifact's prediction, computed earlier, not a re-implementation of the model.
A request whose hours fall inside the window is answered by array indexing (microseconds instead
of ~12 ms of pandas features + tree traversal per call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from bike_assets.ml.model import predict_counts
from bike_serving.openmp import one_openmp_thread
from bike_serving.timestamps import PARIS, SECONDS_PER_HOUR, paris_day_hours


@dataclass(frozen=True, eq=False)
class ForecastCache:
    """`values[counter_code, hour - first_hour]` for the hours `[first_hour, first_hour + n)`."""

    day: date  # the Paris day the window starts on (refreshed when the day rolls over)
    first_hour: int  # hours since the epoch
    values: NDArray[np.float64]  # [counter, hour], read-only

    @property
    def n_hours(self) -> int:
        return int(self.values.shape[1])

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.first_hour * SECONDS_PER_HOUR, PARIS)

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp((self.first_hour + self.n_hours) * SECONDS_PER_HOUR, PARIS)

    def lookup(
        self, codes: NDArray[np.intp], hours: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """(values, hit): values are NaN where `hit` is False (hour outside the window)."""
        if len(hours) == 1:  # most requests: Python scalars beat numpy's per-call overhead
            at = int(hours[0]) - self.first_hour
            inside = 0 <= at < self.n_hours
            value = float(self.values[int(codes[0]), at]) if inside else np.nan
            return np.array([value]), np.array([inside])
        offset = hours - self.first_hour
        if len(offset) and offset.min() >= 0 and offset.max() < self.n_hours:
            # the common case: one fancy-indexing gather, no masking
            return self.values[codes, offset], np.ones(len(offset), dtype=bool)
        hit = (offset >= 0) & (offset < self.n_hours)
        values = np.full(len(codes), np.nan)
        values[hit] = self.values[codes[hit], offset[hit]]
        return values, hit


def pipeline_frame(counter_ids: NDArray[np.object_], hours: NDArray[np.int64]) -> pd.DataFrame:
    """The pipeline's raw input `(counter_id, timestamp)` for hours since the epoch."""
    return pd.DataFrame(
        {
            "counter_id": counter_ids,
            "timestamp": pd.to_datetime(hours * SECONDS_PER_HOUR, unit="s", utc=True),
        }
    )


def predict_rows(
    pipeline: Pipeline,
    counters: NDArray[np.object_],
    codes: NDArray[np.intp],
    hours: NDArray[np.int64],
) -> NDArray[np.float64]:
    """The pipeline's own counts for (counter code, hour) rows, in one call (blocking)."""
    with one_openmp_thread():  # the server keeps answering while this runs
        return predict_counts(pipeline, pipeline_frame(counters[codes], hours))


def build_forecast_cache(
    pipeline: Pipeline, counters: Sequence[str], day: date, days: int
) -> ForecastCache:
    """Predict `len(counters) x hours` rows in one `predict` call and keep them as a 2-D array."""
    hours = paris_day_hours(day, days)
    if not len(counters) or not len(hours):
        return ForecastCache(day, int(hours[0]) if len(hours) else 0, np.zeros((len(counters), 0)))
    codes = np.repeat(np.arange(len(counters), dtype=np.intp), len(hours))
    values = predict_rows(
        pipeline, np.asarray(counters, dtype=object), codes, np.tile(hours, len(counters))
    ).reshape(len(counters), len(hours))
    values.setflags(write=False)  # shared by concurrent requests: nobody may write into it
    return ForecastCache(day, int(hours[0]), values)
