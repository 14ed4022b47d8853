"""Which hours a model never trained on, from the training range its pointer records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

HOUR = pd.Timedelta(hours=1)


def unseen_mask(timestamps: pd.Series, trained_range: Mapping[str, Any]) -> NDArray[np.bool_]:
    """True for the hours outside `trained_range` = {start, end, excluded: [{start, end}]}
    (half-open, UTC ISO strings). An empty range means unknown: nothing counts as unseen.

    Ranges written before the regression window existed have no `excluded` key and an
    inclusive `end` (the last training hour): read as such.
    """
    ts = pd.to_datetime(timestamps, utc=True)
    if not trained_range.get("start") or not trained_range.get("end"):
        return np.zeros(len(ts), dtype=np.bool_)
    start = pd.Timestamp(trained_range["start"]).tz_convert("UTC")
    end = pd.Timestamp(trained_range["end"]).tz_convert("UTC")
    if "excluded" not in trained_range:
        end += HOUR
    unseen = (ts < start) | (ts >= end)
    for window in trained_range.get("excluded") or []:
        w_start = pd.Timestamp(window["start"]).tz_convert("UTC")
        w_end = pd.Timestamp(window["end"]).tz_convert("UTC")
        unseen |= (ts >= w_start) & (ts < w_end)
    return np.asarray(unseen, dtype=np.bool_)
