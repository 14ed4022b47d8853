"""Ingestion: every hourly count of every Paris counter, one overwritable partition per day."""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg
import pandas as pd

from bike_assets.partitions import daily_partitions
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.warehouse import partition_expr
from bike_assets.schema import KEY_COLUMNS, schema_problems
from bike_assets.settings import PARIS_TZ, Settings
from bike_assets.sources.base import CountsSource

_settings = Settings.from_env()
_STORE_KIND = "bigquery" if _settings.env == "gcp" else "duckdb"


def _preview(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    shown = frame.head(rows).astype(str)
    return dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "_no rows_")


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    kinds={"python", _STORE_KIND},
    pool="paris_api",
    metadata={"partition_expr": partition_expr(_settings.env)},
    description=(
        "Hourly counts of every counter channel, one partition per Paris-local day "
        "(23 or 25 hours on DST days). Re-materializing a day replaces its rows."
    ),
)
def raw_counts(
    context: dg.AssetExecutionContext, source: CountsSource, batch_metrics: BatchMetricsResource
) -> pd.DataFrame:
    window = context.partition_time_window
    start: datetime = window.start
    end: datetime = window.end
    batch = source.fetch(start, end)
    frame = batch.frame
    # The source answers for [start, end); anything else would leak into a neighbour partition.
    inside = (frame["timestamp"] >= pd.Timestamp(start)) & (frame["timestamp"] < pd.Timestamp(end))
    outside = int((~inside).sum())
    frame = frame.loc[inside].reset_index(drop=True)
    drop_reasons = dict(batch.drop_reasons)
    if outside:
        drop_reasons["outside_window"] = outside

    run_facts = {
        "run_window": f"[{start.isoformat()}, {end.isoformat()})",
        "run_dropped_records": batch.dropped + outside,
        "run_drop_reasons": dg.MetadataValue.json(drop_reasons),
        "run_api_requests": batch.requests,
        "source": type(source).__name__,
    }
    # A backfill run materializes many partitions: each gets its own day's figures.
    days = frame["timestamp"].dt.tz_convert(PARIS_TZ).dt.strftime("%Y-%m-%d")
    by_day = dict(tuple(frame.groupby(days)))
    few = len(context.partition_keys) <= 7  # a preview table per day of a year is event bloat
    for key in context.partition_keys:
        day = by_day.get(key, frame.iloc[0:0])
        local = day["timestamp"].dt.tz_convert(PARIS_TZ)
        context.add_asset_metadata(
            {
                "dagster/row_count": len(day),
                "counters_seen": int(day["counter_id"].nunique()),
                "first_hour": str(local.min()) if len(day) else "",
                "last_hour": str(local.max()) if len(day) else "",
                **({"preview": _preview(day)} if few else {}),
                **run_facts,
            },
            partition_key=key,
        )
    batch_metrics.push_ingested(len(frame), run_id=context.run.run_id)
    return frame


@dg.asset(
    group_name="ingestion",
    kinds={"python", _STORE_KIND},
    description="One row per counter: names, site, coordinates, installation date, "
    "first/last seen.",
)
def counters(context: dg.AssetExecutionContext, raw_counts: pd.DataFrame) -> pd.DataFrame:
    if raw_counts.empty:
        table = pd.DataFrame(
            columns=[
                "counter_id",
                "counter_name",
                "site_id",
                "site_name",
                "lat",
                "lon",
                "installation_date",
                "first_seen",
                "last_seen",
                "rows",
            ]
        )
    else:
        ordered = raw_counts.sort_values("timestamp")
        grouped = ordered.groupby("counter_id", sort=True)
        table = grouped.agg(
            counter_name=("counter_name", "last"),
            site_id=("site_id", "last"),
            site_name=("site_name", "last"),
            lat=("lat", "last"),
            lon=("lon", "last"),
            installation_date=("installation_date", "last"),
            first_seen=("timestamp", "min"),
            last_seen=("timestamp", "max"),
            rows=("count", "size"),
        ).reset_index()
    context.add_output_metadata(
        {
            "dagster/row_count": len(table),
            "sites": int(table["site_id"].nunique()) if len(table) else 0,
            "preview": _preview(table, 10),
        }
    )
    return table


# --- checks -------------------------------------------------------------------------------


def check_schema(frame: pd.DataFrame) -> dg.AssetCheckResult:
    problems = schema_problems(frame)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "rows": len(frame)},
    )


def check_counts(frame: pd.DataFrame) -> dg.AssetCheckResult:
    values = frame["count"]
    integral = pd.api.types.is_integer_dtype(values)
    negative = int((values < 0).sum()) if integral else -1
    missing = int(values.isna().sum())
    return dg.AssetCheckResult(
        passed=bool(integral and negative == 0 and missing == 0),
        metadata={"integer_dtype": bool(integral), "negative": negative, "missing": missing},
    )


def check_unique_keys(frame: pd.DataFrame) -> dg.AssetCheckResult:
    duplicates = int(frame.duplicated(KEY_COLUMNS).sum())
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicate_keys": duplicates})


def check_completeness(frame: pd.DataFrame, warn_below: float) -> dg.AssetCheckResult:
    """Present rows / (counters seen x Paris-local hours) for each day in the frame."""
    if frame.empty:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": "no rows at all for this window"},
        )
    # Expected: every hour of a day for each counter seen on or around it (between its first
    # and last day in the frame), so a counter installed mid-range does not flag earlier days.
    midnight = frame["timestamp"].dt.tz_convert(PARIS_TZ).dt.floor("D", ambiguous=True)
    day = midnight.dt.tz_localize(None)
    present = day.groupby(day).size()
    span = day.groupby(frame["counter_id"]).agg(["min", "max"])
    grid = present.index.to_numpy()
    active = (
        (span["min"].to_numpy()[:, None] <= grid) & (span["max"].to_numpy()[:, None] >= grid)
    ).sum(axis=0)
    starts = present.index.tz_localize(PARIS_TZ)
    ends = (present.index + pd.Timedelta(days=1)).tz_localize(PARIS_TZ)
    hours = ((ends - starts) / pd.Timedelta(hours=1)).astype(int)  # 23, 24 or 25
    expected = active * hours
    per_day = pd.DataFrame(
        {
            "day": present.index.strftime("%Y-%m-%d"),
            "hours": hours,
            "counters": active,
            "expected": expected,
            "present": present.to_numpy(),
            "ratio": (present.to_numpy() / expected).round(4),
        }
    )
    table = per_day.sort_values("ratio").head(20)
    worst = float(per_day["ratio"].min())
    return dg.AssetCheckResult(
        passed=worst >= warn_below,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "worst_day_ratio": worst,
            "threshold": warn_below,
            "days": len(per_day),
            "days_below_threshold": int((per_day["ratio"] < warn_below).sum()),
            "worst_days": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )


RAW_COUNTS_CHECKS = [
    dg.AssetCheckSpec(
        "raw_counts_schema",
        asset="raw_counts",
        blocking=True,
        description="Tidy columns and dtypes.",
    ),
    dg.AssetCheckSpec(
        "raw_counts_non_negative_integers",
        asset="raw_counts",
        blocking=True,
        description="Counts are non-negative integers.",
    ),
    dg.AssetCheckSpec(
        "raw_counts_unique_keys",
        asset="raw_counts",
        blocking=True,
        description="One row per (counter_id, timestamp).",
    ),
    dg.AssetCheckSpec(
        "raw_counts_completeness",
        asset="raw_counts",
        description="Hours x counters present vs expected per Paris day; WARN below "
        "COMPLETENESS_WARN.",
    ),
]


@dg.multi_asset_check(specs=RAW_COUNTS_CHECKS, ins={"raw_counts": dg.AssetIn("raw_counts")})
def raw_counts_checks(raw_counts: pd.DataFrame) -> Iterator[dg.AssetCheckResult]:
    """All checks of the run's days from one read of them (a backfill is ~1M rows)."""
    warn_below = Settings.from_env().thresholds.completeness_warn
    results = (
        check_schema(raw_counts),
        check_counts(raw_counts),
        check_unique_keys(raw_counts),
        check_completeness(raw_counts, warn_below),
    )
    for spec, result in zip(RAW_COUNTS_CHECKS, results, strict=True):
        yield dg.AssetCheckResult(
            check_name=spec.name,
            asset_key=spec.asset_key,
            passed=result.passed,
            severity=result.severity,
            metadata=result.metadata,
        )
