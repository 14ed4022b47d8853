"""Time-based splits: the only kind this platform makes.

Timeline (Paris-local days, every window half-open):

    [ train_baseline | test_baseline ][ train_current | test_current ]
                       `- regression -'                `- last week -'
                          window

`test_baseline` is the regression window: chosen once (by the first retrain, or explicitly),
recorded, then passed back here as `regression_window` on every later retrain, so it never
moves with the data and no model ever trains on it (a new model must still work on those old
weeks, and the champion is scored there out of sample). `train_current` then runs from the end
of the regression window to `test_current`, the last `test_current_days` (the improvement
check, sliding with the data). No training row is later than any test row of the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta

import pandas as pd

from bike_assets.ml.paris_days import paris_day_start
from bike_assets.settings import PARIS_TZ


class NotEnoughDataError(ValueError):
    """Too few days for the requested windows; says how much is needed and how much exists."""


@dataclass(frozen=True)
class SplitWindows:
    test_current_days: int = 7
    train_current_days: int = 28
    test_baseline_days: int = 14
    min_train_baseline_days: int = 14
    baseline_start: date | None = None
    baseline_end: date | None = None  # exclusive; default: where train_current starts
    end: date | None = None  # exclusive; default: the day after the last ingested hour
    # With less history than the windows ask for, shrink the three earlier windows (never
    # test_current) down to these minimums rather than refuse: a first month of data can
    # already give an honest, time-based first champion.
    shrink_to_fit: bool = True
    min_train_current_days: int = 7
    min_test_baseline_days: int = 3
    min_train_baseline_floor_days: int = 7

    @property
    def minimum_days(self) -> int:
        if not self.shrink_to_fit:
            return self.days_needed
        return self.test_current_days + min(
            self.train_current_days + self.test_baseline_days + self.min_train_baseline_days,
            self.min_train_current_days
            + self.min_test_baseline_days
            + self.min_train_baseline_floor_days,
        )

    def fitted_to(self, have_days: int) -> SplitWindows:
        """These windows, or smaller ones in the same proportions when data is short."""
        if not self.shrink_to_fit or have_days >= self.days_needed or self.baseline_end:
            return self
        available = have_days - self.test_current_days
        train_current = max(self.min_train_current_days, available * 25 // 100)
        test_baseline = max(self.min_test_baseline_days, available * 15 // 100)
        return replace(
            self,
            train_current_days=train_current,
            test_baseline_days=test_baseline,
            min_train_baseline_days=min(
                self.min_train_baseline_days, available - train_current - test_baseline
            ),
        )

    @property
    def days_needed(self) -> int:
        return (
            self.test_current_days
            + self.train_current_days
            + self.test_baseline_days
            + self.min_train_baseline_days
        )


@dataclass(frozen=True)
class Splits:
    train_baseline: pd.DataFrame
    test_baseline: pd.DataFrame
    train_current: pd.DataFrame
    test_current: pd.DataFrame
    ranges: dict[str, tuple[date, date]]  # name -> [first day, end day)
    windows: SplitWindows  # the windows used (smaller than asked when data was short)

    def frames(self) -> dict[str, pd.DataFrame]:
        return {
            "train_baseline": self.train_baseline,
            "test_baseline": self.test_baseline,
            "train_current": self.train_current,
            "test_current": self.test_current,
        }


def _between(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    mask = (frame["timestamp"] >= paris_day_start(start)) & (
        frame["timestamp"] < paris_day_start(end)
    )
    return frame.loc[mask].reset_index(drop=True)


def make_splits(
    raw: pd.DataFrame, windows: SplitWindows, regression_window: tuple[date, date] | None = None
) -> Splits:
    """The four windows. Without `regression_window`, test_baseline is placed by `windows`
    (the first choice); with it, test_baseline is exactly that recorded window."""
    if raw.empty:
        raise NotEnoughDataError(
            f"raw_counts is empty: need at least {windows.days_needed} days of counts "
            "(ingest them first: dagster asset materialize --select raw_counts "
            "--partition-range ...)"
        )
    local_days = raw["timestamp"].dt.tz_convert(PARIS_TZ).dt.date
    first_day, last_day = local_days.min(), local_days.max()
    end = windows.end or (last_day + timedelta(days=1))
    have = (end - first_day).days
    if have < windows.minimum_days:
        smallest = windows.fitted_to(windows.minimum_days)
        raise NotEnoughDataError(
            f"need at least {windows.minimum_days} days of raw_counts "
            f"({smallest.min_train_baseline_days} train_baseline + "
            f"{smallest.test_baseline_days} test_baseline + {smallest.train_current_days} "
            f"train_current + {smallest.test_current_days} test_current), found {have} "
            f"({first_day} to {end - timedelta(days=1)})"
        )
    if regression_window is not None:
        return _splits_around(raw, windows, regression_window, first_day, end)
    windows = windows.fitted_to(have)
    test_current_start = end - timedelta(days=windows.test_current_days)
    train_current_start = test_current_start - timedelta(days=windows.train_current_days)
    baseline_end = windows.baseline_end or train_current_start
    baseline_end = min(baseline_end, train_current_start)
    baseline_start = max(windows.baseline_start or first_day, first_day)
    test_baseline_start = baseline_end - timedelta(days=windows.test_baseline_days)
    baseline_train_days = (test_baseline_start - baseline_start).days
    if baseline_train_days < windows.min_train_baseline_days:
        raise NotEnoughDataError(
            f"the baseline window {baseline_start} to {baseline_end} leaves "
            f"{max(baseline_train_days, 0)} days for train_baseline, need "
            f"{windows.min_train_baseline_days}"
        )
    ranges = {
        "train_baseline": (baseline_start, test_baseline_start),
        "test_baseline": (test_baseline_start, baseline_end),
        "train_current": (train_current_start, test_current_start),
        "test_current": (test_current_start, end),
    }
    return _cut(raw, ranges, windows)


def _cut(raw: pd.DataFrame, ranges: dict[str, tuple[date, date]], windows: SplitWindows) -> Splits:
    frames = {name: _between(raw, a, b) for name, (a, b) in ranges.items()}
    for name, frame in frames.items():
        if frame.empty:
            raise NotEnoughDataError(f"{name} ({ranges[name][0]} to {ranges[name][1]}) has no rows")
    return Splits(ranges=ranges, windows=windows, **frames)


def _splits_around(
    raw: pd.DataFrame,
    windows: SplitWindows,
    regression_window: tuple[date, date],
    first_day: date,
    end: date,
) -> Splits:
    """Splits for a recorded regression window: everything outside it and before
    test_current is training data."""
    window_start, window_end = regression_window
    test_current_start = end - timedelta(days=windows.test_current_days)
    if window_end > test_current_start:
        raise NotEnoughDataError(
            f"the regression window {window_start} to {window_end} reaches into test_current "
            f"(from {test_current_start}): move it explicitly (splits config "
            "test_baseline_start / test_baseline_end)"
        )
    if window_start <= first_day:
        raise NotEnoughDataError(
            f"the regression window starts on {window_start}, leaving no training days before "
            f"it (data from {first_day})"
        )
    ranges = {
        "train_baseline": (first_day, window_start),
        "test_baseline": (window_start, window_end),
        "train_current": (window_end, test_current_start),
        "test_current": (test_current_start, end),
    }
    used = replace(
        windows,
        test_baseline_days=(window_end - window_start).days,
        train_current_days=(test_current_start - window_end).days,
        baseline_start=None,
        baseline_end=window_end,
    )
    return _cut(raw, ranges, used)
