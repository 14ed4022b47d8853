"""Datasets: the four time-based windows every model is trained and judged on."""

from datetime import date

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.lifecycle.regression_window import current_window, record_window
from bike_assets.ml.splits import SplitWindows, make_splits
from bike_assets.resources.warehouse import Warehouse

SPLIT_NAMES = ("train_baseline", "test_baseline", "train_current", "test_current")


class SplitConfig(dg.Config):
    test_current_days: int = Field(7, ge=1, description="test_current: the last N days.")
    train_current_days: int = Field(28, ge=1, description="train_current: N days before it.")
    test_baseline_days: int = Field(14, ge=1, description="test_baseline: last N days of baseline.")
    min_train_baseline_days: int = Field(14, ge=1)
    test_baseline_start: str | None = Field(
        None,
        description="Move the regression window (test_baseline) to start on this day "
        "(YYYY-MM-DD; with test_baseline_end). Recorded; later retrains keep it.",
    )
    test_baseline_end: str | None = Field(
        None, description="End of the moved regression window, exclusive (YYYY-MM-DD)."
    )
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
            end=parse(self.end),
            shrink_to_fit=self.shrink_to_fit,
        )


@dg.multi_asset(
    outs={name: dg.AssetOut(kinds={"pandas"}) for name in SPLIT_NAMES},
    group_name="datasets",
    description="Time-based train/test windows: test_baseline is the recorded regression "
    "window (chosen by the first retrain, moved only by run config, never trained on); "
    "test_current the last days; the train windows everything else before test_current.",
)
def splits(  # type: ignore[no-untyped-def]
    context: dg.AssetExecutionContext,
    config: SplitConfig,
    raw_counts: pd.DataFrame,
    warehouse: Warehouse,
):
    recorded = current_window(warehouse)
    if config.test_baseline_start or config.test_baseline_end:
        if not (config.test_baseline_start and config.test_baseline_end):
            raise dg.Failure("set both test_baseline_start and test_baseline_end to move it")
        moved = (
            date.fromisoformat(config.test_baseline_start),
            date.fromisoformat(config.test_baseline_end),
        )
        result = make_splits(raw_counts, config.windows(), regression_window=moved)
        if moved != recorded:
            record_window(
                warehouse,
                moved,
                run_id=context.run.run_id,
                reason=f"moved by run config from {recorded}",
            )
    elif recorded is not None:
        result = make_splits(raw_counts, config.windows(), regression_window=recorded)
    else:
        result = make_splits(raw_counts, config.windows())
        record_window(
            warehouse,
            result.ranges["test_baseline"],
            run_id=context.run.run_id,
            reason="chosen by the first retrain",
        )
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
                "regression_window": " .. ".join(
                    d.isoformat() for d in result.ranges["test_baseline"]
                ),
                "first_hour_utc": str(frame["timestamp"].min()),
                "last_hour_utc": str(frame["timestamp"].max()),
            },
        )
    context.log.info("splits: %s", {k: [str(d) for d in v] for k, v in result.ranges.items()})
