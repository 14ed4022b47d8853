"""Datasets: the four time-based windows every model is trained and judged on."""

from datetime import date

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.ml.splits import SplitWindows, make_splits

SPLIT_NAMES = ("train_baseline", "test_baseline", "train_current", "test_current")


class SplitConfig(dg.Config):
    test_current_days: int = Field(7, ge=1, description="test_current: the last N days.")
    train_current_days: int = Field(28, ge=1, description="train_current: N days before it.")
    test_baseline_days: int = Field(14, ge=1, description="test_baseline: last N days of baseline.")
    min_train_baseline_days: int = Field(14, ge=1)
    baseline_start: str | None = Field(None, description="Frozen baseline start (YYYY-MM-DD).")
    baseline_end: str | None = Field(None, description="Frozen baseline end, exclusive.")
    end: str | None = Field(None, description="Data end, exclusive (default: after last hour).")
    shrink_to_fit: bool = Field(
        True, description="With short history, shrink the earlier windows (not test_current)."
    )

    def windows(self) -> SplitWindows:
        def parse(value: str | None) -> date | None:
            return date.fromisoformat(value) if value else None

        return SplitWindows(
            test_current_days=self.test_current_days,
            train_current_days=self.train_current_days,
            test_baseline_days=self.test_baseline_days,
            min_train_baseline_days=self.min_train_baseline_days,
            baseline_start=parse(self.baseline_start),
            baseline_end=parse(self.baseline_end),
            end=parse(self.end),
            shrink_to_fit=self.shrink_to_fit,
        )


@dg.multi_asset(
    outs={name: dg.AssetOut(kinds={"pandas"}) for name in SPLIT_NAMES},
    group_name="datasets",
    description="Time-based train/test windows (baseline frozen, current sliding).",
)
def splits(context: dg.AssetExecutionContext, config: SplitConfig, raw_counts: pd.DataFrame):  # type: ignore[no-untyped-def]
    result = make_splits(raw_counts, config.windows())
    for name, frame in result.frames().items():
        first, end = result.ranges[name]
        yield dg.MaterializeResult(
            asset_key=name,
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "first_day": first.isoformat(),
                "end_day_exclusive": end.isoformat(),
                "days": (end - first).days,
                "counters": int(frame["counter_id"].nunique()),
                "shrunk_to_fit": result.windows != config.windows(),
                "first_hour_utc": str(frame["timestamp"].min()),
                "last_hour_utc": str(frame["timestamp"].max()),
            },
        )
    context.log.info("splits: %s", {k: [str(d) for d in v] for k, v in result.ranges.items()})
