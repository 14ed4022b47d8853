"""Monitoring: the forecast history, how its published forecasts did, whether the data drifted.

What drives these assets (the README's automation table):

* `predictions`: declarative automation. Today's issue day is requested once yesterday's
  `raw_counts` partition has landed (and a champion exists); never on a clock, so never on stale
  counts. A new champion does not re-issue a day: published forecasts stay what was published.
* `champion_health`, `drift_report`: weekly, once the Monday..Sunday week is over AND a
  `raw_counts` day landed after Monday 00:00 Paris (normally Sunday's, ingested at 02:00), so the
  last 7 days they read are the complete week. `retrain_sensor` acts on their results.
"""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.backfill_progress import BackfillProgress
from bike_assets.lifecycle.audit import record_decision
from bike_assets.ml.metrics import score
from bike_assets.ml.paris_days import paris_day_start
from bike_assets.monitoring.drift import measure_drift
from bike_assets.monitoring.forecast_history import (
    LOOKBACK_DAYS,
    ForecastModel,
    issue_forecast,
    published_forecasts,
)
from bike_assets.partitions import DEFAULT
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.report_store import ReportStore
from bike_assets.resources.thresholds import DecisionThresholds
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import PARIS_TZ

WINDOW = pd.Timedelta(days=7)
MIN_HEALTH_ROWS = 24 * 3  # fewer scored hours than this says nothing about a model


_SERVED_MODEL = dg.AssetSelection.assets("champion", "champion_level")
# Eager on the issue day in progress: yesterday's counts landing is the trigger. A new champion
# or level is not a reason to re-issue: the day's forecast was published; a new champion issues
# from the next day on. Eager waits while a dependency is missing (yesterday's counts, any
# champion) or in progress (a retrain, a level update already running). The daily level update
# that the same landing triggers runs in a run of its own (an unpartitioned asset cannot share a
# run with a partition, so "will be requested" cannot order them): the forecast records the
# level it was made with in `model_level_as_of`.
PREDICTIONS_AUTOMATION = (
    dg.AutomationCondition.eager()
    .replace("any_deps_updated", dg.AutomationCondition.any_deps_updated().ignore(_SERVED_MODEL))
    .with_label("issue today's forecast once yesterday's raw_counts landed")
)

WEEK_OVER_CRON = "0 0 * * 1"  # Monday 00:00 Paris: the Monday..Sunday week is over
# on_cron with only raw_counts required to update since the tick: the champion, the splits and
# the forecast history change rarely or on their own clock, and must not hold the week back.
WEEKLY_MONITOR_AUTOMATION = (
    dg.AutomationCondition.on_cron(WEEK_OVER_CRON, PARIS_TZ)
    .replace(
        f"all_deps_updated_since_cron({WEEK_OVER_CRON}, {PARIS_TZ})",
        dg.AutomationCondition.all_deps_updated_since_cron(WEEK_OVER_CRON, PARIS_TZ).allow(
            dg.AssetSelection.assets("raw_counts")
        ),
    )
    .with_label("weekly, once the week's last raw_counts day landed")
)


def _latest_window(warehouse: Warehouse) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    last = warehouse.last_count_timestamp()
    if last is None:
        return None
    end = last + pd.Timedelta(hours=1)
    return end - WINDOW, end


@dg.asset(
    group_name="monitoring",
    deps=["raw_counts", "champion", "predictions"],
    kinds={"scikit-learn"},
    io_manager_key="object_io_manager",
    automation_condition=WEEKLY_MONITOR_AUTOMATION,
    description="The forecasts that were PUBLISHED for the last 7 ingested days, scored against "
    "the counts that arrived: for each (counter, hour), the most recent forecast by the current "
    "champion version issued on or before that hour's Paris day (lead 0-23 h when predictions "
    "ran daily), never an hour inside the training data of the model that issued it. Fewer "
    f"than {MIN_HEALTH_ROWS} such hours gives state insufficient_data with the reason.",
)
def champion_health(
    context: dg.AssetExecutionContext,
    champion_store: ChampionStore,
    warehouse: Warehouse,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    health: dict[str, Any] = {
        "state": "insufficient_data",
        "r2": None,
        "rmse": None,
        "mae": None,
        "rows": 0,
    }
    pointer = champion_store.read()
    window = _latest_window(warehouse)
    if pointer is None:
        health["reason"] = "no champion yet"
    elif window is None:
        health["reason"] = "raw_counts is empty"
    else:
        start, end = window
        health.update(
            {"version": pointer.version, "window_start": str(start), "window_end": str(end)}
        )
        # only the forecasts for the window's hours (whatever day they were issued on)
        forecasts = warehouse.read_between("predictions", start, end)
        published = published_forecasts(forecasts, pointer.version, start, end)
        actual = warehouse.read_counts(start, end)[["counter_id", "timestamp", "count"]]
        actual = actual.assign(counter_id=actual["counter_id"].astype(str))
        joined = published.merge(actual, on=["counter_id", "timestamp"], how="inner")
        health.update(
            {
                "rows": len(joined),
                "issues_scored": int(joined["issued_at"].nunique()),
                "mean_lead_hours": float(joined["lead_hours"].mean()) if len(joined) else None,
            }
        )
        if len(joined) < MIN_HEALTH_ROWS:
            health["reason"] = (
                f"{len(joined)} hours of [{start}, {end}) have both an arrived count and a "
                f"forecast published by champion {pointer.version} after its training data "
                f"(need {MIN_HEALTH_ROWS}); materialize the `predictions` issue days first"
            )
        else:
            scores = score(joined["count"], joined["predicted_count"])
            health.update(
                {"state": "ok", "r2": scores["r2"], "rmse": scores["rmse"], "mae": scores["mae"]}
            )
            batch_metrics.push_health(scores["r2"], scores["rmse"], mae=scores["mae"])
    context.log.info("champion_health: %s", health)
    return dg.MaterializeResult(
        value=health,
        metadata={
            "state": health["state"],
            "r2": _or_nan(health["r2"]),
            "rmse": _or_nan(health["rmse"]),
            "mae": _or_nan(health["mae"]),
            "rows": health["rows"],
            "champion_version": health.get("version", "none"),
            "reason": health.get("reason", ""),
            "window": f"{health['window_start']} .. {health['window_end']}"
            if "window_start" in health
            else "none",
            "issues_scored": health.get("issues_scored", 0),
            "mean_lead_hours": _or_nan(health.get("mean_lead_hours")),
        },
    )


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class DriftConfig(dg.Config):
    reference_cap: int = Field(20_000, ge=100, description="Rows sampled from train_baseline.")
    seed: int = 0
    force_retrain: bool = Field(False, description="P0: ask retrain_sensor to retrain anyway.")


@dg.asset(
    group_name="monitoring",
    deps=["raw_counts"],
    kinds={"evidently"},
    io_manager_key="object_io_manager",
    automation_condition=WEEKLY_MONITOR_AUTOMATION,
    description="Evidently DataDriftPreset: a seeded sample of train_baseline vs the last 7 "
    "days; the MEASURED share of drifted columns, per-column scores, an HTML report.",
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    train_baseline: pd.DataFrame,
    warehouse: Warehouse,
    batch_metrics: BatchMetricsResource,
    report_store: ReportStore,
    decision_thresholds: DecisionThresholds,
) -> dg.MaterializeResult:
    window = _latest_window(warehouse)
    current = warehouse.read_counts(*window) if window else train_baseline.iloc[0:0]
    # written where the report store keeps reports (locally: that folder, so the HTML's path
    # stays valid; on GCP a scratch folder, then uploaded)
    html = report_store.scratch_path(f"drift_{context.run.run_id[:8]}.html")
    result = measure_drift(
        train_baseline,
        current,
        html_path=html,
        reference_cap=config.reference_cap,
        seed=config.seed,
    )
    # Stored where the deployment keeps reports (this folder, or GCS) and linked (#14).
    stored = (
        report_store.put(html.name, html.read_bytes(), "text/html") if result.html_path else None
    )
    detected = result.share is not None and result.share >= decision_thresholds.drift_warning
    if result.share is not None:
        batch_metrics.push_drift(result.share, detected, columns=result.columns)
    record_decision(
        warehouse,
        kind="drift",
        decision=result.state if result.share is None else ("drift" if detected else "no_drift"),
        value=result.share,
        detail=result.reason or f"{result.drifted_columns}/{result.n_columns} columns drifted",
        run_id=context.run.run_id,
    )
    columns = pd.DataFrame.from_dict(result.columns, orient="index")
    return dg.MaterializeResult(
        value=result.to_dict() | {"force_retrain": config.force_retrain},
        metadata={
            "state": result.state,
            "drift_share": result.share if result.share is not None else float("nan"),
            "drifted_columns": result.drifted_columns or 0,
            "n_columns": result.n_columns,
            "reason": result.reason or "",
            "force_retrain": config.force_retrain,
            "current_window": f"{window[0]} .. {window[1]}" if window else "none",
            "columns": dg.MetadataValue.md(
                columns.round(4).to_markdown() if len(columns) else "_none_"
            ),
            "html_report": stored.link() if stored else dg.MetadataValue.text("not rendered"),
        },
    )


class PredictionsConfig(dg.Config):
    horizon_days: int = Field(7, ge=1, le=31, description="Paris days forecast from the issue day.")
    progress_every_days: int = Field(
        default=30, ge=1, description="A backfill logs its progress every this many issue days."
    )


@dg.asset(
    partitions_def=DEFAULT.issues,  # build_definitions applies the settings' calendar
    # a backfill of issue days loads the champion once and reads the counts once
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="monitoring",
    deps=[
        dg.AssetDep(
            "raw_counts",
            # issue day D waits for the counts of D-1 (it also reads the 6 days before)
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
        ),
        "champion",
        "champion_level",
    ],
    kinds={"scikit-learn", "duckdb"},  # the warehouse's kind: build_definitions sets it per env
    # the IO manager's `partition_expr` is derived from it by build_definitions (local or GCP)
    metadata={"partition_column": "issued_at"},
    automation_condition=PREDICTIONS_AUTOMATION,
    description="The forecast history, one partition per Paris issue day D: the forecast of "
    "every active counter for the Paris days D..D+6, made by the champion being served when "
    "the partition is materialized, with its model version and uri in every row. No look-ahead: "
    "only counts before D are read (`data_until` <= `issued_at`), so a backfill of past issue "
    "days gives what those days would have issued with that model; `created_at` and "
    "`model_seen_until` show when it was made and what the model had seen (champion_health never "
    "scores those hours). Re-materializing a day replaces that day's forecast only.",
)
def predictions(
    context: dg.AssetExecutionContext,
    config: PredictionsConfig,
    champion_store: ChampionStore,
    model_store: ModelStore,
    warehouse: Warehouse,
) -> pd.DataFrame:
    pointer = champion_store.read()
    if pointer is None:
        raise dg.Failure("predictions need a champion: run retrain_job first")
    pipeline = model_store.load(pointer.model_uri)
    model = ForecastModel.from_pointer(pointer)
    keys = list(context.partition_keys)
    # one read for the whole range: the lookback of the first day to the start of the last
    counts = warehouse.read_counts(
        paris_day_start(keys[0], -LOOKBACK_DAYS), paris_day_start(keys[-1])
    )
    created_at = datetime.now(UTC)
    issues, rows = [], 0
    progress = BackfillProgress(context, "predictions", keys, config.progress_every_days)
    for done, key in enumerate(keys, start=1):
        issue = issue_forecast(
            pipeline, model, key, counts, horizon_days=config.horizon_days, created_at=created_at
        )
        issues.append(issue)
        rows += len(issue)
        progress.update(done, len(keys), rows)
        context.add_asset_metadata(
            {
                "dagster/row_count": len(issue),
                "counters": int(issue["counter_id"].nunique()),
                "data_until": str(issue["data_until"].max()) if len(issue) else "",
                "model_version": model.version,
                "model_kind": model.kind,
                "model_uri": model.uri,
                "model_level_as_of": model.level_as_of or "never updated",
                "horizon_days": config.horizon_days,
                **({} if len(issue) else {"reason": "no counts in the 7 days before this day"}),
            },
            partition_key=key,
        )
    table = pd.concat(issues, ignore_index=True)
    if table.empty:
        raise dg.Failure(
            f"no counts in the {LOOKBACK_DAYS} days before any issue day {keys[0]}..{keys[-1]}: "
            "ingest raw_counts first"
        )
    return table
