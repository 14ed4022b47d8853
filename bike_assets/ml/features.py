"""Calendar features built from the raw request columns `(counter_id, timestamp)`.

This transformer is the first step of the model `Pipeline`, so the artifact that is evaluated is
exactly the artifact that is served: nobody re-implements features in the HTTP layer.
All calendar features are taken in Paris local time (commuter peaks follow the wall clock, also
across DST changes); the timestamps themselves stay tz-aware UTC everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import holidays
import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, TransformerMixin

from bike_assets.settings import PARIS_TZ

INPUT_COLUMNS: list[str] = ["counter_id", "timestamp"]
FEATURE_NAMES: list[str] = [
    "counter",
    "hour",
    "weekday",
    "hour_of_week",
    "month",
    "day_of_year",
    "public_holiday",
    "school_holiday",
]
COUNTER_FEATURE = 0  # index of the categorical column, for HistGradientBoosting
_EPOCH_DAY = np.datetime64("1970-01-01", "D")


class UnknownCounterError(ValueError):
    """Counters the model was not trained on; never mapped silently to another one."""

    def __init__(self, counters: Iterable[str]) -> None:
        self.counters = sorted(set(counters))
        shown = ", ".join(self.counters[:10]) + (" ..." if len(self.counters) > 10 else "")
        super().__init__(f"unknown counter_id(s) for this model: {shown}")


@lru_cache(maxsize=64)
def _holiday_days(year: int) -> tuple[frozenset[int], frozenset[int]]:
    """(public holidays, Paris school holidays = zone C) as day numbers since 1970-01-01."""
    public = holidays.France(years=year)
    school = holidays.France(years=year, subdiv="Zone C", categories=("school",))

    def days(cal: Any) -> frozenset[int]:
        return frozenset(int((np.datetime64(d, "D") - _EPOCH_DAY).astype(int)) for d in cal)

    return days(public), days(school)


def holiday_flags(local_days: NDArray[np.int64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Flags for Paris-local day numbers (days since 1970-01-01)."""
    years = pd.unique((_EPOCH_DAY + local_days.astype("timedelta64[D]")).astype("datetime64[Y]"))
    public: set[int] = set()
    school: set[int] = set()
    for y in years:
        p, s = _holiday_days(int(str(y)[:4]))
        public |= p
        school |= s
    pub = np.isin(local_days, np.fromiter(public, dtype=np.int64, count=len(public)))
    sch = np.isin(local_days, np.fromiter(school, dtype=np.int64, count=len(school)))
    return pub.astype(np.float64), sch.astype(np.float64)


def to_utc(timestamps: Any) -> pd.DatetimeIndex:
    """A tz-aware UTC index; naive timestamps are refused (their meaning would be a guess)."""
    index = pd.DatetimeIndex(pd.to_datetime(timestamps))
    if index.tz is None:
        raise ValueError("timestamp must be timezone-aware (UTC or with an offset)")
    return index.tz_convert("UTC")


def calendar_frame(timestamps: Any) -> pd.DataFrame:
    """The calendar part of the features (no counter), one row per timestamp."""
    local = to_utc(timestamps).tz_convert(PARIS_TZ)
    hour = local.hour.to_numpy(dtype=np.float64)
    weekday = local.weekday.to_numpy(dtype=np.float64)
    naive_days = local.tz_localize(None).to_numpy().astype("datetime64[D]")
    day_numbers = (naive_days - _EPOCH_DAY).astype(np.int64)
    public, school = holiday_flags(day_numbers)
    return pd.DataFrame(
        {
            "hour": hour,
            "weekday": weekday,
            "hour_of_week": weekday * 24 + hour,
            "month": local.month.to_numpy(dtype=np.float64),
            "day_of_year": local.dayofyear.to_numpy(dtype=np.float64),
            "public_holiday": public,
            "school_holiday": school,
        }
    )


class CalendarFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """`(counter_id, timestamp)` -> numeric features; the counter becomes a category code.

    `fit` learns the set of counters; `transform` raises `UnknownCounterError` for any other.
    """

    def fit(self, X: pd.DataFrame, y: Any = None) -> CalendarFeatures:
        _check_columns(X)
        self.counters_ = np.array(sorted(pd.unique(X["counter_id"].astype(str))), dtype=object)
        self._codes = {c: i for i, c in enumerate(self.counters_)}
        return self

    def counter_codes(self, counter_ids: Sequence[str] | pd.Series) -> NDArray[np.float64]:
        codes = pd.Series(counter_ids, dtype="object").astype(str).map(self._codes)
        if codes.isna().any():
            unknown = pd.Series(counter_ids, dtype="object")[codes.isna().to_numpy()]
            raise UnknownCounterError(unknown.astype(str))
        return codes.to_numpy(dtype=np.float64)

    def transform(self, X: pd.DataFrame) -> NDArray[np.float64]:
        _check_columns(X)
        codes = self.counter_codes(X["counter_id"])
        cal = calendar_frame(X["timestamp"])
        return np.column_stack([codes, cal.to_numpy(dtype=np.float64)])

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.str_]:
        return np.array(FEATURE_NAMES)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if hasattr(self, "counters_"):
            self._codes = {c: i for i, c in enumerate(self.counters_)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_codes", None)  # derived from counters_, rebuilt on load
        return state


def _check_columns(X: Any) -> None:
    if not isinstance(X, pd.DataFrame):
        raise TypeError("the model takes a DataFrame with columns counter_id, timestamp")
    missing = [c for c in INPUT_COLUMNS if c not in X.columns]
    if missing:
        raise ValueError(f"missing input column(s): {missing}")
