"""The champion scored on demand: the latest complete week and the regression window.

What `POST /admin/evaluate` starts (the original's `/evaluate`), done honestly: the champion is
scored only on hours outside its recorded training range, beside the seasonal naive of the same
rows, so "how good is what we serve" never reads an in-sample number.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from bike_assets.lifecycle.unseen import unseen_mask
from bike_assets.ml.metrics import score
from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.ml.naive import HISTORY_WEEKS, seasonal_naive
from bike_assets.ml.paris_days import last_whole_day, paris_day_start
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.warehouse import Warehouse


def score_window(
    name: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    pipeline: Any,
    pointer: ChampionPointer,
    warehouse: Warehouse,
) -> dict[str, Any]:
    """Champion and naive on the rows of [start, end) the champion never trained on."""
    rows = warehouse.read_counts(start, end)
    rows = rows[rows["counter_id"].astype(str).isin(set(known_counters(pipeline)))]
    unseen = unseen_mask(rows["timestamp"], pointer.trained_range)
    kept = rows.loc[unseen].reset_index(drop=True)
    result: dict[str, Any] = {
        "window": name,
        "start": str(start),
        "end": str(end),
        "rows": len(kept),
        "rows_left_out_in_sample": int((~unseen).sum()),
    }
    if kept.empty:
        result["reason"] = "no hour of this window is outside the champion's training data"
        return result
    history = warehouse.read_counts(start - pd.Timedelta(weeks=HISTORY_WEEKS), start)
    result["champion"] = score(kept["count"], predict_counts(pipeline, kept))
    result["naive"] = score(kept["count"], seasonal_naive(history, kept))
    return result


def latest_week(warehouse: Warehouse) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The last 7 whole Paris days of raw_counts."""
    last = warehouse.last_count_timestamp()
    if last is None:
        return None
    end_day = last_whole_day(last) + timedelta(days=1)
    return paris_day_start(end_day, -7), paris_day_start(end_day)
