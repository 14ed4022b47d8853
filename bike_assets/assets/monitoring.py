"""Monitoring: forecasts, how the champion does on fresh hours, and whether the data drifted."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from bike_assets.ml.metrics import score
from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.monitoring.drift import measure_drift
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import Settings

DECISION_LOG = "decision_log"
WINDOW = pd.Timedelta(days=7)
MIN_HEALTH_ROWS = 24 * 3  # fewer scored hours than this says nothing about a model


def record_decision(
    warehouse: Warehouse, *, kind: str, decision: str, value: float | None, detail: str, run_id: str
) -> None:
    """Append one row to the audit table of every automated decision."""
    warehouse.append(
        DECISION_LOG,
        pd.DataFrame(
            [
                {
                    "decided_at": datetime.now(UTC),
                    "run_id": run_id,
                    "kind": kind,
                    "decision": decision,
                    "value": np.nan if value is None else float(value),
                    "detail": detail,
                }
            ]
        ),
    )


def _latest_window(warehouse: Warehouse) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    last = warehouse.last_count_timestamp()
    if last is None:
        return None
    end = last + pd.Timedelta(hours=1)
    return end - WINDOW, end


@dg.asset(
    group_name="monitoring",
    deps=["raw_counts", "champion"],
    kinds={"scikit-learn"},
    io_manager_key="object_io_manager",
    description="The champion scored on the last 7 ingested days, only on hours after its "
    "training range (never in-sample). Too few rows gives state insufficient_data.",
)
def champion_health(
    context: dg.AssetExecutionContext,
    champion_store: ChampionStore,
    model_store: ModelStore,
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
        trained_end = pointer.trained_range.get("end")
        if trained_end:
            # Hours the champion saw in training would flatter it: score only later ones.
            start = max(start, pd.Timestamp(trained_end).tz_convert("UTC") + pd.Timedelta(hours=1))
        pipeline = model_store.load(pointer.model_uri)
        actual = warehouse.read_counts(start, end)
        actual = actual[actual["counter_id"].astype(str).isin(set(known_counters(pipeline)))]
        health.update(
            {
                "version": pointer.version,
                "window_start": str(start),
                "window_end": str(end),
                "rows": len(actual),
            }
        )
        if len(actual) < MIN_HEALTH_ROWS:
            health["reason"] = (
                f"{len(actual)} scored hours after the champion's training range "
                f"(need {MIN_HEALTH_ROWS})"
            )
        else:
            scores = score(actual["count"], predict_counts(pipeline, actual))
            health.update(
                {"state": "ok", "r2": scores["r2"], "rmse": scores["rmse"], "mae": scores["mae"]}
            )
            batch_metrics.push_health(scores["r2"], scores["rmse"], mae=scores["mae"])
    context.log.info("champion_health: %s", health)
    return dg.MaterializeResult(
        value=health,
        metadata={
            "state": health["state"],
            "r2": health["r2"] if health["r2"] is not None else float("nan"),
            "rmse": health["rmse"] if health["rmse"] is not None else float("nan"),
            "rows": health["rows"],
            "champion_version": health.get("version", "none"),
            "reason": health.get("reason", ""),
        },
    )


class DriftConfig(dg.Config):
    reference_cap: int = Field(20_000, ge=100, description="Rows sampled from train_baseline.")
    seed: int = 0
    force_retrain: bool = Field(False, description="P0: ask retrain_sensor to retrain anyway.")


@dg.asset(
    group_name="monitoring",
    deps=["raw_counts"],
    kinds={"evidently"},
    io_manager_key="object_io_manager",
    description="Evidently DataDriftPreset: a seeded sample of train_baseline vs the last 7 "
    "days; the MEASURED share of drifted columns, per-column scores, an HTML report.",
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    train_baseline: pd.DataFrame,
    warehouse: Warehouse,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    settings = Settings.from_env()
    window = _latest_window(warehouse)
    current = warehouse.read_counts(*window) if window else train_baseline.iloc[0:0]
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    html = settings.reports_dir / f"drift_{context.run.run_id[:8]}.html"
    result = measure_drift(
        train_baseline,
        current,
        html_path=html,
        reference_cap=config.reference_cap,
        seed=config.seed,
    )
    detected = result.share is not None and result.share >= settings.thresholds.drift_warning
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
            "html_report": dg.MetadataValue.path(result.html_path or ""),
        },
    )


class PredictionsConfig(dg.Config):
    horizon_hours: int = Field(168, ge=1, le=24 * 31)


@dg.asset(
    group_name="monitoring",
    deps=["raw_counts", "champion"],
    kinds={"scikit-learn", "duckdb"},
    description="The champion's forecast for the next 7 days for every active counter (origin = "
    "the hour after the last ingested one), plus its backtest on the last 7 ingested days.",
)
def predictions(
    context: dg.AssetExecutionContext,
    config: PredictionsConfig,
    champion_store: ChampionStore,
    model_store: ModelStore,
    warehouse: Warehouse,
) -> pd.DataFrame:
    pointer = champion_store.read()
    window = _latest_window(warehouse)
    if pointer is None or window is None:
        raise dg.Failure("predictions need a champion and ingested counts: run retrain_job first")
    pipeline = model_store.load(pointer.model_uri)
    start, origin = window
    recent = warehouse.read_counts(start, origin)
    known = set(known_counters(pipeline))
    active = sorted(set(recent["counter_id"].astype(str)) & known)
    hours = pd.date_range(origin, periods=config.horizon_hours, freq="h")
    future = pd.DataFrame(
        {"counter_id": np.repeat(active, len(hours)), "timestamp": np.tile(hours, len(active))}
    )
    future["timestamp"] = pd.to_datetime(future["timestamp"], utc=True)
    backtest = recent[recent["counter_id"].astype(str).isin(known)][
        ["counter_id", "timestamp", "count"]
    ].rename(columns={"count": "actual_count"})
    frames = []
    for kind, rows in (("forecast", future), ("backtest", backtest)):
        if rows.empty:
            continue
        out = rows.assign(
            kind=kind,
            predicted_count=predict_counts(pipeline, rows),
            origin=origin,
            model_version=pointer.version,
        )
        frames.append(out)
    table = pd.concat(frames, ignore_index=True)
    if "actual_count" not in table:
        table["actual_count"] = np.nan
    table["actual_count"] = table["actual_count"].astype("float64")
    table["counter_id"] = table["counter_id"].astype(str)
    context.add_output_metadata(
        {
            "dagster/row_count": len(table),
            "origin": str(origin),
            "model_version": pointer.version,
            "active_counters": len(active),
            "horizon_hours": config.horizon_hours,
        }
    )
    return table[
        [
            "kind",
            "counter_id",
            "timestamp",
            "predicted_count",
            "actual_count",
            "origin",
            "model_version",
        ]
    ]
