"""The regression window (`test_baseline`): chosen once, recorded, moved only on purpose.

Stored as rows of the warehouse table `regression_window` (the latest row is the window in
force), so every later retrain scores on the same old weeks and excludes them from training:
no model, challenger or champion, is ever scored there on hours it trained on. It moves only by
an explicit run config of the splits, which appends a row saying who moved it and why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from bike_assets.ml.paris_days import paris_day_start
from bike_assets.resources.warehouse import Warehouse

TABLE = "regression_window"


def current_window(warehouse: Warehouse) -> tuple[date, date] | None:
    """[first day, end day) of the window in force, None before the first retrain."""
    rows = warehouse.read(TABLE)
    if rows.empty:
        return None
    latest = rows.sort_values("recorded_at").iloc[-1]
    return date.fromisoformat(str(latest["start_day"])), date.fromisoformat(str(latest["end_day"]))


def regression_hours(window: tuple[date, date]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the window's Paris days, in UTC."""
    return paris_day_start(window[0]), paris_day_start(window[1])


def outside_window(
    rows: pd.DataFrame, warehouse: Warehouse
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """`rows` without the hours of the window in force, and the excluded hours as a pointer's
    `trained_range["excluded"]` records them ([] before the first retrain)."""
    window = current_window(warehouse)
    if window is None:
        return rows, []
    start, end = regression_hours(window)
    kept = rows[(rows["timestamp"] < start) | (rows["timestamp"] >= end)]
    return kept, [{"start": start.isoformat(), "end": end.isoformat()}]


def record_window(
    warehouse: Warehouse, window: tuple[date, date], *, run_id: str, reason: str
) -> None:
    warehouse.append(
        TABLE,
        pd.DataFrame(
            [
                {
                    "recorded_at": datetime.now(UTC),
                    "start_day": window[0].isoformat(),
                    "end_day": window[1].isoformat(),
                    "run_id": run_id,
                    "reason": reason,
                }
            ]
        ),
    )
