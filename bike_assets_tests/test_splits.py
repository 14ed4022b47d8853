"""Time-based splits: no leakage, clear errors when data is short."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from bike_assets.ml.splits import NotEnoughDataError, SplitWindows, make_splits


def hourly(first_day: str, days: int, counters: int = 2) -> pd.DataFrame:
    start = pd.Timestamp(first_day, tz="Europe/Paris")
    hours = pd.date_range(start, start + pd.DateOffset(days=days), freq="h", inclusive="left")
    hours = hours.tz_convert("UTC")
    return pd.DataFrame(
        {
            "counter_id": np.repeat([f"c{i}" for i in range(counters)], len(hours)),
            "timestamp": np.tile(hours, counters),
            "count": 1,
        }
    )


SMALL = SplitWindows(
    test_current_days=2, train_current_days=3, test_baseline_days=2, min_train_baseline_days=3
)


def test_no_training_row_is_later_than_any_test_row_of_its_split() -> None:
    splits = make_splits(hourly("2024-03-01", 20), SMALL)
    assert splits.train_baseline["timestamp"].max() < splits.test_baseline["timestamp"].min()
    assert splits.train_current["timestamp"].max() < splits.test_current["timestamp"].min()
    # and the challenger (trained on both train windows) never sees a test_current hour
    assert splits.train_current["timestamp"].max() < splits.test_current["timestamp"].min()
    assert splits.train_baseline["timestamp"].max() < splits.test_current["timestamp"].min()


def test_windows_partition_the_days_without_overlap() -> None:
    raw = hourly("2024-03-01", 20)
    splits = make_splits(raw, SMALL)
    keys = pd.concat(splits.frames().values())[["counter_id", "timestamp"]]
    assert not keys.duplicated().any()
    assert splits.ranges["test_current"] == (date(2024, 3, 19), date(2024, 3, 21))
    assert splits.ranges["train_current"] == (date(2024, 3, 16), date(2024, 3, 19))
    assert splits.ranges["test_baseline"] == (date(2024, 3, 14), date(2024, 3, 16))
    assert len(splits.test_current) == 2 * 48


def test_dst_day_counts_its_23_hours() -> None:
    # 2024-03-31 is the spring DST change in Paris: test_current = [03-30, 04-01)
    splits = make_splits(hourly("2024-03-15", 17), SMALL)
    assert splits.ranges["test_current"] == (date(2024, 3, 30), date(2024, 4, 1))
    assert len(splits.test_current) == 2 * (24 + 23)


def test_frozen_baseline_window_is_respected() -> None:
    windows = SplitWindows(
        test_current_days=2,
        train_current_days=3,
        test_baseline_days=2,
        min_train_baseline_days=3,
        baseline_start=date(2024, 3, 3),
        baseline_end=date(2024, 3, 12),
    )
    splits = make_splits(hourly("2024-03-01", 20), windows)
    assert splits.ranges["train_baseline"] == (date(2024, 3, 3), date(2024, 3, 10))
    assert splits.ranges["test_baseline"] == (date(2024, 3, 10), date(2024, 3, 12))


def test_too_little_data_says_how_much_is_needed_and_found() -> None:
    with pytest.raises(NotEnoughDataError, match=r"need at least 10 days .* found 6"):
        make_splits(hourly("2024-03-01", 6), SMALL)
    with pytest.raises(NotEnoughDataError, match="empty"):
        make_splits(hourly("2024-03-01", 6).iloc[0:0], SMALL)


def test_a_first_month_shrinks_the_earlier_windows_but_never_test_current() -> None:
    splits = make_splits(hourly("2021-07-01", 31), SplitWindows())
    assert splits.ranges["test_current"] == (date(2021, 7, 25), date(2021, 8, 1))
    assert splits.ranges["train_current"] == (date(2021, 7, 18), date(2021, 7, 25))
    assert splits.ranges["test_baseline"] == (date(2021, 7, 15), date(2021, 7, 18))
    assert splits.ranges["train_baseline"] == (date(2021, 7, 1), date(2021, 7, 15))
    assert splits.windows.train_current_days == 7 < SplitWindows().train_current_days
    with pytest.raises(NotEnoughDataError, match="need at least 63 days"):
        make_splits(hourly("2021-07-01", 31), SplitWindows(shrink_to_fit=False))
    with pytest.raises(NotEnoughDataError, match="need at least 24 days"):
        make_splits(hourly("2021-07-01", 20), SplitWindows())
