"""Features built from the raw request columns `(counter_id, timestamp)`.

`CalendarFeatures` (the calendar and the counter) is kept as it was, so that artifacts pickled
with it still load; the default model uses `ForecastFeatures`: the same calendar columns plus the
counter's recent level, learned from the counts at fit time and stored in the artifact.

This transformer is the first step of the model `Pipeline`, so the artifact that is evaluated is
exactly the artifact that is served: nobody re-implements features in the HTTP layer.
All calendar features are taken in Paris local time (commuter peaks follow the wall clock, also
across DST changes); the timestamps themselves stay tz-aware UTC everywhere else.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, Literal

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
_EPOCH_DATE = date(1970, 1, 1)


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
        return frozenset((d - _EPOCH_DATE).days for d in cal)

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

    def fit(self, frame: pd.DataFrame, y: Any = None) -> CalendarFeatures:
        _check_columns(frame)
        counters = pd.unique(frame["counter_id"].astype(str))
        self.counters_ = np.array(sorted(counters), dtype=object)
        self._codes = {c: i for i, c in enumerate(self.counters_)}
        return self

    def counter_codes(self, counter_ids: Sequence[str] | pd.Series) -> NDArray[np.float64]:
        codes = pd.Series(counter_ids, dtype="object").astype(str).map(self._codes)
        if codes.isna().any():
            unknown = pd.Series(counter_ids, dtype="object")[codes.isna().to_numpy()]
            raise UnknownCounterError(unknown.astype(str))
        return codes.to_numpy(dtype=np.float64)

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        _check_columns(frame)
        codes = self.counter_codes(frame["counter_id"])
        cal = calendar_frame(frame["timestamp"])
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


def _check_columns(frame: Any) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError("the model takes a DataFrame with columns counter_id, timestamp")
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing input column(s): {missing}")


# --------------------------------------------------------------------------------------------
# Forecast features: the calendar + the counter's recent level, learned at fit time.
# --------------------------------------------------------------------------------------------

WEEK_HOURS = 168
AnnualMode = Literal["raw", "auto", "none"]
LEVEL_FEATURES: list[str] = [
    "recent_level",
    "pooled_level",
    "recent_counter_level",
    "profile_level",
]
FORECAST_FEATURE_NAMES: list[str] = FEATURE_NAMES + LEVEL_FEATURES
# Month / day-of-year can be learned, rather than extrapolated, only from a full year of history.
MIN_DAYS_FOR_ANNUAL = 365
_SUNDAY_HOUR0 = 6 * 24  # hour-of-week of Sunday 00:00 (Monday = 0)
# The level features are learned only from at least 2 x level_weeks weeks of training data: with
# less, most training rows have a partial window (a median of 1 or 2 values) and the trees learn
# to trust a noisy level (on the 3-week synthetic history of the lifecycle tests, RMSE 14.9 with
# the levels vs 13.7 without on the last 5 days; naive 14.6). The level columns then hold
# NO_LEVEL (counts are never negative) and the model predicts alone.
MIN_WEEKS_PER_LEVEL_WEEK = 2
NO_LEVEL = -1.0


def utc_hours(timestamps: Any) -> NDArray[np.int64]:
    """Whole UTC hours since 1970-01-01 (floored), whatever the datetime resolution."""
    naive = to_utc(timestamps).tz_localize(None).to_numpy().astype("datetime64[h]")
    return naive.astype(np.int64)


def outage_days(frame: pd.DataFrame) -> NDArray[np.bool_]:
    """Rows on a Paris-local day where their counter counted 0 bikes in total (needs `count`).

    No Paris counter sees zero bikes in a whole day (even Christmas Day has some): such days are
    sensor outages. The real data has a counter at 0 for two months that then came back to its
    usual level; learned as traffic, the outage would teach the model an empty street.
    """
    codes = pd.factorize(frame["counter_id"].astype(str))[0]
    return _zero_days(codes, frame["timestamp"], frame["count"].to_numpy(dtype=np.float64))


def _zero_days(
    codes: NDArray[np.int64], timestamps: Any, y: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """`outage_days` from integer counter codes: one bincount over (counter, local day)."""
    if len(y) == 0:
        return np.zeros(0, dtype=np.bool_)
    local = to_utc(timestamps).tz_convert(PARIS_TZ).tz_localize(None)
    day = (local.to_numpy().astype("datetime64[D]") - _EPOCH_DAY).astype(np.int64)
    day -= day.min()
    key = codes.astype(np.int64) * (int(day.max()) + 1) + day
    totals = np.bincount(key, weights=np.maximum(y, 0.0))
    return np.asarray(totals[key] <= 0.0, dtype=np.bool_)


def _windows(cube: NDArray[np.float64], weeks: int) -> NDArray[np.float64]:
    """(counters, blocks, 168) -> (counters, blocks, 168, weeks): entry j holds blocks
    j - weeks + 1 .. j (NaN before the first block)."""
    pad = np.full((cube.shape[0], weeks - 1, cube.shape[2]), np.nan)
    padded = np.concatenate([pad, cube], axis=1)
    return np.lib.stride_tricks.sliding_window_view(padded, weeks, axis=1)


class ForecastFeatures(CalendarFeatures):
    """`(counter_id, timestamp)` -> the calendar features + the counter's recent level.

    Columns: `FORECAST_FEATURE_NAMES` (the 8 of `CalendarFeatures`, same order, then 4 levels).

    Recent level. "recent_level" is the seasonal-naive forecast turned into a feature: the median
    count of the same counter at the same Paris hour-of-week over `level_weeks` weeks;
    "pooled_level" the same with Monday..Friday pooled per hour (mean of 20 hours instead of a
    median of 4: less noise); "recent_counter_level" the counter's mean over all hours of those
    weeks; "profile_level" the counter x hour-of-week median over all the rows given to `fit`
    (the fallback when the recent weeks have no data, e.g. an outage). Weeks are 168-hour blocks
    counted back from the end of the training data (block -1 = its last week). A row in block
    `k` uses the `level_weeks` blocks before block `e = min(k - level_gap_weeks, 0)`: every hour
    after the training data gets its last `level_weeks` weeks, which is what a forecast can know,
    and a training row the weeks before its own week: one definition for fit and predict. The
    level tables are learned at `fit` (they need the counts) and stored in the pipeline, so
    `transform` is a pure function of `(counter_id, timestamp)` and the fitted state.
    Outage days (`outage_days`) and public holidays are left out of the tables, and a public
    holiday looks up the level of a Sunday at the same hour (Paris traffic on a holiday is a
    Sunday's, not a weekday's: this also corrects the level the model starts from). With less
    than `MIN_WEEKS_PER_LEVEL_WEEK * level_weeks` weeks of training data, no level is learned.

    Month / day-of-year (`annual`). "raw" passes them as they are; "none" blanks them (a
    constant: the trees cannot split on it); "auto" keeps them only when the training data
    spans at least `MIN_DAYS_FOR_ANNUAL` days (the training asset does not rely on it: it
    chooses "raw" or "none" on a hold-out, see `ml/model.py:fit_with_selection`). With less than
    a year, the days being forecast may never have been seen (a tree sends them to the nearest
    seen date) and one-off episodes (the 2020 lockdown, Christmas) can be learned as seasonal;
    but where last year's calendar does carry over (the Paris summer of 2021), the columns help,
    hence a choice made on recent weeks rather than a rule. The columns stay in place so that
    the feature layout does not depend on how much data there is.
    """

    def __init__(
        self, level_weeks: int = 4, level_gap_weeks: int = 0, annual: AnnualMode = "auto"
    ) -> None:
        self.level_weeks = level_weeks
        self.level_gap_weeks = level_gap_weeks
        self.annual = annual

    def fit(self, frame: pd.DataFrame, y: Any = None) -> ForecastFeatures:
        self._fit(frame, y)
        return self

    def fit_transform(self, frame: pd.DataFrame, y: Any = None, **fit_params: Any) -> Any:
        """`fit(frame, y).transform(frame)`, with the calendar and the codes computed once
        (they are most of the cost of the features on a year of hourly rows)."""
        codes, cal, hours = self._fit(frame, y)
        return self._assemble(codes, cal, hours)

    def with_recent_counts(self, frame: pd.DataFrame, y: Any) -> ForecastFeatures:
        """A copy whose recent levels are those of the weeks ending with `frame` (the daily
        level update): forecasts after `frame` get the last `level_weeks` weeks of it, the
        same definition as at fit. The counters, the calendar choices and the whole-history
        profile stay as fitted; rows of counters the model does not know are ignored. A model
        fitted without levels (too short a history) is returned unchanged: its trees never saw
        a level to start from."""
        if not self.tables_:
            return self
        rows = frame["counter_id"].astype(str).isin(self._codes)
        frame, y = frame.loc[rows], np.asarray(y, dtype=np.float64)[rows.to_numpy()]
        hours = utc_hours(frame["timestamp"])
        if not len(hours) or (hours.max() + 1 - hours.min()) < self.level_weeks * WEEK_HOURS:
            raise ValueError(f"a level update needs {self.level_weeks} weeks of recent counts")
        updated = copy.deepcopy(self)
        updated.end_hour_ = int(hours.max()) + 1
        codes = updated.counter_codes(frame["counter_id"])
        updated._fit_levels(frame, y, codes, calendar_frame(frame["timestamp"]), hours)
        updated.tables_["profile_level"] = self.tables_["profile_level"]
        return updated

    def _fit(
        self, frame: pd.DataFrame, y: Any
    ) -> tuple[NDArray[np.float64], pd.DataFrame, NDArray[np.int64]]:
        super().fit(frame, y)
        codes = self.counter_codes(frame["counter_id"])
        cal = calendar_frame(frame["timestamp"])
        hours = utc_hours(frame["timestamp"])
        self.first_hour_ = int(hours.min()) if len(hours) else 0
        self.end_hour_ = int(hours.max()) + 1 if len(hours) else 0  # exclusive
        span_days = (self.end_hour_ - self.first_hour_) / 24.0
        self.use_annual_ = self.annual == "raw" or (
            self.annual == "auto" and span_days >= MIN_DAYS_FOR_ANNUAL
        )
        self.first_block_ = 0
        self.tables_: dict[str, NDArray[np.float32]] = {}
        span_weeks = (self.end_hour_ - self.first_hour_) / WEEK_HOURS
        if (
            self.level_weeks > 0
            and y is not None
            and span_weeks >= MIN_WEEKS_PER_LEVEL_WEEK * (self.level_weeks)
        ):
            self._fit_levels(frame, np.asarray(y, dtype=np.float64), codes, cal, hours)
        return codes, cal, hours

    def _fit_levels(
        self,
        frame: pd.DataFrame,
        y: NDArray[np.float64],
        codes_f: NDArray[np.float64],
        cal: pd.DataFrame,
        hours: NDArray[np.int64],
    ) -> None:
        codes = codes_f.astype(np.int64)
        how = cal["hour_of_week"].to_numpy().astype(np.int64)
        block = (hours - self.end_hour_) // WEEK_HOURS  # -1 (last week) .. first_block_
        self.first_block_ = int(block.min())
        n_blocks = -self.first_block_
        valid = ~_zero_days(codes, frame["timestamp"], y) & (cal["public_holiday"].to_numpy() == 0)
        # one value per (counter, week block, local hour-of-week); the hour repeated when DST
        # ends falls twice on one local hour-of-week, hence sum / n
        flat = (codes * n_blocks + (block - self.first_block_)) * WEEK_HOURS + how
        size = len(self.counters_) * n_blocks * WEEK_HOURS
        sums = np.bincount(flat[valid], weights=y[valid], minlength=size)
        n = np.bincount(flat[valid], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            cube = (sums / n).reshape(len(self.counters_), n_blocks, WEEK_HOURS)
        days = cube.reshape(cube.shape[0], n_blocks, 7, 24)
        # table[:, j] serves window end e = first_block_ + 1 + j (j = -1: e = 0, the last weeks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows stay NaN
            workday = np.nanmean(days[:, :, :5], axis=2, keepdims=True)
            pooled_cube = np.concatenate(
                [np.repeat(workday, 5, axis=2), days[:, :, 5:]], axis=2
            ).reshape(cube.shape)
            level = np.nanmedian(_windows(cube, self.level_weeks), axis=-1)
            self.tables_ = {
                "recent_level": level.astype(np.float32),  # (counters, blocks, 168)
                "pooled_level": np.nanmean(_windows(pooled_cube, self.level_weeks), axis=-1).astype(
                    np.float32
                ),  # (counters, blocks, 168)
                "recent_counter_level": np.nanmean(level, axis=-1).astype(np.float32),
                "profile_level": np.nanmedian(cube, axis=1).astype(np.float32),  # (c, 168)
            }

    def _level_columns(
        self, codes: NDArray[np.float64], hours: NDArray[np.int64], cal: pd.DataFrame
    ) -> list[NDArray[np.float64]]:
        n = len(codes)
        if not self.tables_:
            # no level learned: a constant (not NaN: an all-NaN column breaks the binning of
            # HistGradientBoosting) that no tree can split on and `RecentLevelRegressor` reads
            # as "no baseline"
            return [np.full(n, NO_LEVEL) for _ in LEVEL_FEATURES]
        block = (hours - self.end_hour_) // WEEK_HOURS
        j = np.minimum(block - self.level_gap_weeks, 0) - (self.first_block_ + 1)
        ok = j >= 0  # a window that starts before the training data has no level
        jj = np.where(ok, j, 0)
        c = codes.astype(np.int64)
        how = np.where(
            cal["public_holiday"].to_numpy() > 0,
            _SUNDAY_HOUR0 + cal["hour"].to_numpy(),
            cal["hour_of_week"].to_numpy(),
        ).astype(np.int64)
        t = self.tables_
        return [
            np.where(ok, t["recent_level"][c, jj, how], np.nan),
            np.where(ok, t["pooled_level"][c, jj, how], np.nan),
            np.where(ok, t["recent_counter_level"][c, jj], np.nan),
            t["profile_level"][c, how].astype(np.float64),
        ]

    def transform(self, frame: pd.DataFrame) -> NDArray[np.float64]:
        _check_columns(frame)
        codes = self.counter_codes(frame["counter_id"])
        cal = calendar_frame(frame["timestamp"])
        return self._assemble(codes, cal, utc_hours(frame["timestamp"]))

    def _assemble(
        self, codes: NDArray[np.float64], cal: pd.DataFrame, hours: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        levels = self._level_columns(codes, hours, cal)
        calendar = cal.to_numpy(dtype=np.float64)  # a copy: `cal` is left as it was
        if not self.use_annual_:
            for name in ("month", "day_of_year"):  # a constant, see the class docstring
                calendar[:, FEATURE_NAMES.index(name) - 1] = 0.0
        return np.column_stack([codes, calendar, *levels])

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.str_]:
        return np.array(FORECAST_FEATURE_NAMES)
