"""Jobs: what runs together."""

from typing import Any

import dagster as dg
import pandas as pd

from bike_assets.lifecycle.audit import record_decision
from bike_assets.lifecycle.champion_moves import promote, read_champion
from bike_assets.lifecycle.champion_scores import latest_week, score_window
from bike_assets.lifecycle.regression_window import current_window, regression_hours
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets("raw_counts"),
    description="Fetch Paris-local days of counts into raw_counts (one run for a range).",
)

counters_job = dg.define_asset_job(
    "counters_job",
    selection=dg.AssetSelection.assets("counters"),
    description="Rebuild the counters table from every ingested day.",
)

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(
        "train_baseline",
        "test_baseline",
        "train_current",
        "test_current",
        "challenger_model",
        "evaluation_report",
        "champion",
    ),
    description="splits -> challenger -> evaluation (vs champion and naive) -> champion pointer.",
    # Never two retrains at once (they could both deploy): the instance's run queue limits this
    # tag to one run in progress (deploy/dagster.yaml, tag_concurrency_limits).
    tags={"bike/serial": "retrain"},
)

daily_predictions_job = dg.define_asset_job(
    "daily_predictions_job",
    selection=dg.AssetSelection.assets("predictions"),
    description="Issue the forecast of Paris day(s) D (counts before D only); a range is a "
    "backfill of issue days. The automation condition runs it daily; this job is for people.",
)

weekly_monitor_job = dg.define_asset_job(
    "weekly_monitor_job",
    selection=dg.AssetSelection.assets("champion_health", "drift_report"),
    description="Score the published forecasts of the last 7 days, measure drift; "
    "retrain_sensor acts on the result. Automated weekly; this job is for people.",
)


class RollbackConfig(dg.Config):
    version: str | None = None  # default: the champion before the current one


@dg.op(description="Point the champion back at an earlier model version (logged as ROLLBACK).")
def rollback_champion(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    champion_store: ChampionStore,
    model_store: ModelStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
    alerts: DiscordResource,
    batch_metrics: BatchMetricsResource,
) -> None:
    current, broken = read_champion(champion_store)
    if broken:
        context.log.warning("current pointer is broken (%s); rolling back over it", broken)
    previous = (current.previous if current else None) or {}
    target = config.version or previous.get("version")
    if not target:
        raise dg.Failure("no previous champion to roll back to; pass config version=<N>")
    if current is not None and target == current.version:
        raise dg.Failure(f"version {target} is already the champion")
    known = previous.get("version") == target
    model_uri = previous["model_uri"] if known else model_store.uri_for(target)
    try:
        model_store.load(model_uri)  # never point the server at something it cannot load
    except Exception as exc:  # whatever the reason, the pointer must not move
        raise dg.Failure(f"cannot roll back to version {target}: {type(exc).__name__}") from exc
    pointer = ChampionPointer(
        version=str(target),
        model_uri=model_uri,
        trained_range=dict(previous.get("trained_range") or {}) if known else {},
        metrics={"rolled_back_from": current.version if current else None},
        previous=current.summary() if current else None,
        kind=str(previous.get("kind") or "model") if known else "model",
        # the artifact it served last (maybe a daily level update) and its MLflow version
        registry_version=str(previous.get("registry_version") or "") if known else "",
    )
    reason = f"rollback from {current.version if current else 'none'} to {target}"
    promote(
        pointer,
        current=current,
        decision="ROLLBACK",
        reason=reason,
        run_id=context.run_id,
        forced=True,
        challenger_version=None,
        store=champion_store,
        tracking=tracking,
        warehouse=warehouse,
        alerts=alerts,
        alert_level="warning",
    )
    batch_metrics.push_deployment("ROLLBACK", run_id=context.run_id)
    context.log.info(reason)


@dg.op(
    description="Score the champion on the latest complete week and on the regression window "
    "(only hours outside its training data), beside the seasonal naive.",
    out=dg.Out(io_manager_key="object_io_manager"),
)
def evaluate_champion(
    context: dg.OpExecutionContext,
    champion_store: ChampionStore,
    model_store: ModelStore,
    warehouse: Warehouse,
) -> dict[str, Any]:
    pointer, broken = read_champion(champion_store)
    if pointer is None:
        raise dg.Failure(f"no champion to evaluate ({broken or 'none promoted yet'})")
    pipeline = model_store.load(pointer.model_uri)
    windows = []
    week = latest_week(warehouse)
    if week is not None:
        windows.append(score_window("latest_week", *week, pipeline, pointer, warehouse))
    regression = current_window(warehouse)
    if regression is not None:
        hours = regression_hours(regression)
        windows.append(score_window("test_baseline", *hours, pipeline, pointer, warehouse))
    rows = [
        {"window": w["window"], "model": model, "rows": w["rows"], **w[model]}
        for w in windows
        for model in ("champion", "naive")
        if model in w
    ]
    table = pd.DataFrame(rows).round(3).to_markdown(index=False) if rows else "_nothing scored_"
    context.add_output_metadata(
        {
            "champion_version": pointer.version,
            "champion_kind": pointer.kind,
            "scores": dg.MetadataValue.md(table),
            "windows": dg.MetadataValue.json(windows),
        }
    )
    for w in windows:
        if "champion" in w:
            record_decision(
                warehouse,
                kind="champion_evaluation",
                decision=w["window"],
                value=w["champion"]["r2"],
                detail=f"v{pointer.version}: R² {w['champion']['r2']:.3f} vs naive "
                f"{w['naive']['r2']:.3f} on {w['rows']} unseen rows",
                run_id=context.run_id,
            )
    context.log.info("champion v%s:\n%s", pointer.version, table)
    return {"version": pointer.version, "windows": windows}


@dg.job(description="Score the champion on the latest complete week and on test_baseline.")
def evaluate_champion_job() -> None:
    evaluate_champion()


@dg.job(description="Move the champion pointer back (config: version, default the previous one).")
def rollback_champion_job() -> None:
    rollback_champion()
