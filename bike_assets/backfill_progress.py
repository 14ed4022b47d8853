"""A long backfill's progress in the run's log: every N partitions, rows so far, rate, ETA.

Used by the partitioned assets whose single-run backfills take minutes (raw_counts fetching a
year of days, predictions issuing a year of forecasts). The wording is what the demo's progress
line reads (`bike_assets/demo/progress.py`; its test runs the real assets).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import dagster as dg


class BackfillProgress:
    """Logs `<asset> progress: done/total days` every `every` days (and at the end)."""

    def __init__(
        self, context: dg.AssetExecutionContext, asset: str, keys: Sequence[str], every: int
    ) -> None:
        self.context, self.asset, self.keys, self.every = context, asset, keys, every
        self.started, self.logged = time.monotonic(), 0

    def update(self, days_done: int, days_total: int, rows: int) -> None:
        if days_total <= self.every:  # a day or a week: nothing worth a line
            return
        if days_done - self.logged < self.every and days_done < days_total:
            return
        self.logged = days_done
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate, left = days_done / elapsed, days_total - days_done
        self.context.log.info(
            f"{self.asset} progress: {days_done}/{days_total} days "
            f"(to {self.keys[min(days_done, len(self.keys)) - 1]}), "
            f"{rows:,} rows so far, {left} days left, "
            f"{rate:.1f} days/s ({rows / elapsed:,.0f} rows/s), ETA {left / rate:.0f} s"
        )
