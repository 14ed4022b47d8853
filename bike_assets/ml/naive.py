"""The seasonal-naive baseline every evaluation must beat.

For each test window: the median count of the same counter at the same Paris hour-of-week over
the 4 weeks before the window starts. It uses only hours before the window, like a forecast would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bike_assets.ml.features import calendar_frame

HISTORY_WEEKS = 4


def seasonal_naive(
    history: pd.DataFrame, test: pd.DataFrame, weeks: int = HISTORY_WEEKS
) -> NDArray[np.float64]:
    """Predictions for `test` rows from `history` rows in the `weeks` before `test` starts.

    Cells with no history fall back to the counter's median over the same weeks, then to the
    median of all counters, so the baseline always answers (and is never flattered by NaNs).
    """
    if test.empty:
        return np.empty(0, dtype=np.float64)
    start = test["timestamp"].min()
    window = history[
        (history["timestamp"] < start) & (history["timestamp"] >= start - pd.Timedelta(weeks=weeks))
    ]
    if window.empty:
        return np.zeros(len(test), dtype=np.float64)
    hist = pd.DataFrame(
        {
            "counter_id": window["counter_id"].astype(str).to_numpy(),
            "how": calendar_frame(window["timestamp"])["hour_of_week"].to_numpy(),
            "count": window["count"].to_numpy(dtype=np.float64),
        }
    )
    cell = hist.groupby(["counter_id", "how"])["count"].median()
    per_counter = hist.groupby("counter_id")["count"].median()
    overall = float(hist["count"].median())
    keys = pd.DataFrame(
        {
            "counter_id": test["counter_id"].astype(str).to_numpy(),
            "how": calendar_frame(test["timestamp"])["hour_of_week"].to_numpy(),
        }
    )
    pred = keys.join(cell.rename("pred"), on=["counter_id", "how"])["pred"]
    pred = pred.fillna(keys["counter_id"].map(per_counter)).fillna(overall)
    return pred.to_numpy(dtype=np.float64)
