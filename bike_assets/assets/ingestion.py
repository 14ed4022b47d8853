"""Ingestion: every hourly count of every Paris counter, one overwritable partition per day.

Guarantees (issue #13):

- a stored day is never emptied or sharply shrunk silently: before anything is written,
  `raw_counts` compares each day of the run with what the warehouse holds and fails the run,
  naming the window and the counts, when a day that had rows comes back empty or with fewer than
  `min_kept_ratio` of them; run config `allow_shrink: true` lets it through on purpose;
- the overwrite of the run's days is one transaction (`resources/warehouse.py`);
- the checks read exactly the run's partitions (partitioned check specs), so their cost follows
  the run, not the history;
- a long backfill logs its progress every `progress_every_days` days (#14).
"""

import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.backfill_progress import BackfillProgress
from bike_assets.partitions import DEFAULT
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.thresholds import DecisionThresholds
from bike_assets.resources.warehouse import Warehouse
from bike_assets.schema import KEY_COLUMNS, schema_problems
from bike_assets.settings import PARIS_TZ
from bike_assets.sources.base import CountsSource, FetchProgress


def _preview(frame: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    shown = frame.head(rows).astype(str)
    return dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "_no rows_")


class RawCountsConfig(dg.Config):  # type: ignore[misc]
    allow_shrink: bool = Field(
        default=False,
        description="Let stored days be replaced by an empty or much smaller answer (e.g. days "
        "the portal no longer serves, on purpose). Off: such a run fails before writing.",
    )
    min_kept_ratio: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="A stored day whose new answer has fewer than this share of its stored rows "
        "fails the run (unless allow_shrink).",
    )
    progress_every_days: int = Field(
        default=30, ge=1, description="A backfill logs its progress every this many days."
    )


@dataclass(frozen=True)
class Shrink:
    day: str
    stored: int
    fetched: int


def shrunk_days(
    stored: Mapping[str, int], fetched: Mapping[str, int], min_kept_ratio: float
) -> list[Shrink]:
    """Days that held rows and would keep fewer than `min_kept_ratio` of them, in day order.

    | stored | fetched            | verdict   |
    |--------|--------------------|-----------|
    | 0      | anything           | fine      |
    | n > 0  | 0                  | shrink    |
    | n > 0  | < min_kept_ratio*n | shrink    |
    | n > 0  | >= that            | fine      |
    """
    return [
        Shrink(day, before, fetched.get(day, 0))
        for day, before in sorted(stored.items())
        if before > 0 and fetched.get(day, 0) < min_kept_ratio * before
    ]


def shrink_message(window: str, shrinks: Sequence[Shrink], min_kept_ratio: float) -> str:
    shown = "; ".join(
        f"{s.day}: stored {s.stored:,} -> fetched {s.fetched:,}" for s in shrinks[:10]
    )
    more = f" (and {len(shrinks) - 10} more days)" if len(shrinks) > 10 else ""
    return (
        f"raw_counts {window}: {len(shrinks)} stored day(s) would be emptied or keep fewer than "
        f"{min_kept_ratio:.0%} of their rows: {shown}{more}. Nothing was written. If the source "
        "really lost these rows, rerun with run config "
        "`ops: {raw_counts: {config: {allow_shrink: true}}}`."
    )


class _FetchProgress(BackfillProgress):
    """The source's progress reports, logged as the backfill's."""

    def __call__(self, p: FetchProgress) -> None:
        self.update(p.days_done, p.days_total, p.rows)


@dg.asset(
    partitions_def=DEFAULT.counts,  # build_definitions applies the settings' calendar
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="ingestion",
    kinds={"python", "duckdb"},  # the warehouse's kind: build_definitions sets it per env
    pool="paris_api",
    # the IO manager's `partition_expr` is derived from it by build_definitions (local or GCP)
    metadata={"partition_column": "timestamp"},
    description=(
        "Hourly counts of every counter channel, one partition per Paris-local day "
        "(23 or 25 hours on DST days). Re-materializing a day replaces its rows in one "
        "transaction; a stored day that would come back empty or much smaller fails the run "
        "unless config `allow_shrink`."
    ),
)
def raw_counts(
    context: dg.AssetExecutionContext,
    config: RawCountsConfig,
    source: CountsSource,
    warehouse: Warehouse,
    batch_metrics: BatchMetricsResource,
) -> pd.DataFrame:
    window = context.partition_time_window
    start: datetime = window.start
    end: datetime = window.end
    keys = list(context.partition_keys)
    progress = _FetchProgress(context, "raw_counts", keys, config.progress_every_days)
    batch = source.fetch(start, end, progress=progress)
    frame = batch.frame
    # The source answers for [start, end); anything else would leak into a neighbour partition.
    inside = (frame["timestamp"] >= pd.Timestamp(start)) & (frame["timestamp"] < pd.Timestamp(end))
    outside = int((~inside).sum())
    frame = frame.loc[inside].reset_index(drop=True)
    drop_reasons = dict(batch.drop_reasons)
    if outside:
        drop_reasons["outside_window"] = outside

    run_window = f"[{start.isoformat()}, {end.isoformat()})"
    days = frame["timestamp"].dt.tz_convert(PARIS_TZ).dt.strftime("%Y-%m-%d")
    by_day = dict(tuple(frame.groupby(days)))
    # Decided before the IO manager deletes anything: a failure here leaves every stored row.
    stored = warehouse.stored_rows_by_day(pd.Timestamp(start), pd.Timestamp(end))
    fetched = {key: len(day) for key, day in by_day.items()}
    shrinks = shrunk_days(stored, fetched, config.min_kept_ratio)
    if shrinks:
        message = shrink_message(run_window, shrinks, config.min_kept_ratio)
        if not config.allow_shrink:
            raise dg.Failure(
                description=message,
                metadata={
                    "run_window": run_window,
                    "shrunk_days": dg.MetadataValue.json(
                        {s.day: {"stored": s.stored, "fetched": s.fetched} for s in shrinks}
                    ),
                },
                allow_retries=False,
            )
        context.log.warning(f"allow_shrink is set, replacing anyway. {message}")

    run_facts = {
        "run_window": run_window,
        "run_dropped_records": batch.dropped + outside,
        "run_drop_reasons": dg.MetadataValue.json(drop_reasons),
        "run_api_requests": batch.requests,
        "source": type(source).__name__,
    }
    # A backfill run materializes many partitions: each gets its own day's figures.
    few = len(keys) <= 7  # a preview table per day of a year is event bloat
    for key in keys:
        day = by_day.get(key, frame.iloc[0:0])
        local = day["timestamp"].dt.tz_convert(PARIS_TZ)
        context.add_asset_metadata(
            {
                "dagster/row_count": len(day),
                "rows_before": stored.get(key, 0),
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
    kinds={"python", "duckdb"},  # the warehouse's kind: build_definitions sets it per env
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


def check_completeness(
    frame: pd.DataFrame, warn_below: float, expected_days: Sequence[str] = ()
) -> dg.AssetCheckResult:
    """Present rows / (counters seen x Paris-local hours) for each day in the frame.

    `expected_days` (`YYYY-MM-DD`, the run's partitions) that hold no row at all fail it too.
    """
    if frame.empty:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "reason": "no rows at all for this window",
                "days_without_rows": dg.MetadataValue.json(sorted(expected_days)),
            },
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
    empty_days = sorted(set(expected_days) - set(per_day["day"]))
    return dg.AssetCheckResult(
        passed=worst >= warn_below and not empty_days,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "days_without_rows": dg.MetadataValue.json(empty_days),
            "worst_day_ratio": worst,
            "threshold": warn_below,
            "days": len(per_day),
            "days_below_threshold": int((per_day["ratio"] < warn_below).sum()),
            "worst_days": dg.MetadataValue.md(table.to_markdown(index=False)),
        },
    )


# (name, blocking, description), in the order `_check_raw_counts` yields their results
RAW_COUNTS_CHECKS = (
    ("raw_counts_schema", True, "Tidy columns and dtypes."),
    ("raw_counts_non_negative_integers", True, "Counts are non-negative integers."),
    ("raw_counts_unique_keys", True, "One row per (counter_id, timestamp)."),
    (
        "raw_counts_completeness",
        False,
        "Hours x counters present vs expected per Paris day of the run; WARN below "
        "COMPLETENESS_WARN, and for a day of the run without any row.",
    ),
)


def raw_counts_checks(counts: dg.DailyPartitionsDefinition) -> dg.AssetChecksDefinition:
    """The checks of raw_counts, partitioned like it (`counts`: the calendar's Paris days).

    Partitioned specs: a run's checks load exactly the run's partitions (one day for the daily
    schedule, the range for a backfill), not the whole table. A function of the calendar because
    check specs, unlike asset specs, cannot be re-partitioned after decoration; Dagster 1.13
    marks partitioned check specs "preview", silenced here only, where the choice is made.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [
            dg.AssetCheckSpec(
                name,
                asset="raw_counts",
                blocking=blocking,
                description=description,
                partitions_def=counts,
            )
            for name, blocking, description in RAW_COUNTS_CHECKS
        ]
    return dg.multi_asset_check(
        specs=specs, name="raw_counts_checks", ins={"raw_counts": dg.AssetIn("raw_counts")}
    )(_check_raw_counts)


def _check_raw_counts(
    context: dg.AssetCheckExecutionContext,
    raw_counts: pd.DataFrame,
    decision_thresholds: DecisionThresholds,
) -> Iterator[dg.AssetCheckResult]:
    """All checks of the run's days (and only those) from one read of them."""
    warn_below = decision_thresholds.completeness_warn
    partitioned = context.has_partition_key or context.has_partition_key_range
    keys = list(context.partition_keys) if partitioned else []
    results = (
        check_schema(raw_counts),
        check_counts(raw_counts),
        check_unique_keys(raw_counts),
        check_completeness(raw_counts, warn_below, expected_days=keys),
    )
    for (name, _, _), result in zip(RAW_COUNTS_CHECKS, results, strict=True):
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key=dg.AssetKey("raw_counts"),
            passed=result.passed,
            severity=result.severity,
            metadata={**result.metadata, "partitions_checked": len(keys)},
        )
