"""The champion: the pointer to what is served, moved by the evaluation's decision."""

from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.lifecycle.audit import log_promotion
from bike_assets.lifecycle.champion_moves import promote, read_champion
from bike_assets.lifecycle.regression_window import outside_window
from bike_assets.lifecycle.trained import TrainedModel, hours_of
from bike_assets.ml.naive import HISTORY_WEEKS, fit_naive
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import PARIS_TZ


class PromotionConfig(dg.Config):
    force: bool = Field(False, description="Promote the challenger whatever the decision (logged).")


def _challenger_pointer(
    challenger: TrainedModel, report: dict[str, Any], current: ChampionPointer | None
) -> ChampionPointer:
    scores = {split: result["scores"]["challenger"] for split, result in report["splits"].items()}
    return ChampionPointer(
        version=challenger.version,
        model_uri=challenger.model_uri,
        trained_range=challenger.trained_range,
        evaluated_range=challenger.evaluated_range,
        metrics={"evaluation_run_id": report["run_id"], **scores},
        previous=current.summary() if current else None,
        kind="model",
        level_as_of=_last_day(challenger.trained_range["end"]),
    )


def _last_day(end_exclusive: str) -> str:
    """The Paris day of the last hour before `end_exclusive`."""
    last = pd.Timestamp(end_exclusive) - pd.Timedelta(hours=1)
    return str(last.tz_convert(PARIS_TZ).date())


def _naive_pointer(
    context: dg.AssetExecutionContext,
    report: dict[str, Any],
    current: ChampionPointer | None,
    warehouse: Warehouse,
    model_store: ModelStore,
    tracking: MlflowTracking,
) -> ChampionPointer:
    """The seasonal naive fitted on the latest weeks (never the regression window), logged
    and registered like any model."""
    last = warehouse.last_count_timestamp()
    if last is None:
        raise dg.Failure("raw_counts is empty: nothing to fit the naive on")
    end = last + pd.Timedelta(hours=1)
    rows = warehouse.read_counts(end - pd.Timedelta(weeks=HISTORY_WEEKS), end)
    rows, excluded = outside_window(rows, warehouse)
    naive = fit_naive(rows)
    trained_range: dict[str, Any] = {**hours_of(rows), "excluded": excluded}
    logged = tracking.log_training(
        naive,
        params={"kind": "seasonal_naive", "weeks": HISTORY_WEEKS, "train_rows": len(rows)},
        metrics={},
        tags={
            "trained_start": trained_range["start"],
            "trained_end": trained_range["end"],
            "served_kind": "naive",
        },
        run_name=f"naive-{context.run.run_id[:8]}",
        dagster_run_id=context.run.run_id,
        model_name="naive",
        alias=None,
    )
    scores = {split: result["scores"]["naive"] for split, result in report["splits"].items()}
    return ChampionPointer(
        version=logged.version,
        model_uri=model_store.save(naive, logged.version),
        trained_range=trained_range,
        metrics={"evaluation_run_id": report["run_id"], **scores},
        previous=current.summary() if current else None,
        kind="naive",
        level_as_of=_last_day(trained_range["end"]),
    )


@dg.asset(
    group_name="evaluation",
    kinds={"json", "mlflow"},
    io_manager_key="object_io_manager",
    description="Pointer to the model being served: {version, kind (model or naive), "
    "model_uri, trained_range (served), evaluated_range, metrics, level_as_of, previous}. "
    "Moved atomically by the evaluation's decision: the challenger's served refit on DEPLOY, "
    "the seasonal naive when it beat the challenger and no better champion exists, or a forced "
    "promotion; every outcome is written to promotion_log.",
)
def champion(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    challenger_model: TrainedModel,
    evaluation_report: dict[str, Any],
    champion_store: ChampionStore,
    model_store: ModelStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
    alerts: DiscordResource,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    decision = evaluation_report["decision"]
    serve = evaluation_report.get("serve", "challenger" if decision == "DEPLOY" else "champion")
    reason = evaluation_report["reason"]
    current, broken = read_champion(champion_store)
    if config.force and serve != "challenger":
        serve, reason = "challenger", f"forced promotion over {decision}: {reason}"
    recorded = "DEPLOY" if serve == "challenger" else decision
    moves = {
        "challenger": lambda: _challenger_pointer(challenger_model, evaluation_report, current),
        "naive": lambda: _naive_pointer(
            context, evaluation_report, current, warehouse, model_store, tracking
        ),
    }
    pointer: ChampionPointer | None = current
    if serve in moves:
        pointer = moves[serve]()
        promote(
            pointer,
            current=current,
            decision=recorded,
            reason=reason,
            run_id=context.run.run_id,
            forced=config.force,
            challenger_version=challenger_model.version,
            store=champion_store,
            tracking=tracking,
            warehouse=warehouse,
            alerts=alerts,
            alert_level="info" if serve == "challenger" else "warning",
        )
    else:
        log_promotion(
            warehouse,
            run_id=context.run.run_id,
            decision=recorded,
            reason=reason,
            forced=config.force,
            challenger_version=challenger_model.version,
            previous_version=current.version if current else None,
            champion_version=current.version if current else None,
            served_kind=current.kind if current else "",
        )
        if recorded == "REJECT":
            alerts.send(
                f"Model REJECT: challenger v{challenger_model.version}",
                reason,
                level="warning",
                dedup_key=f"promotion:{context.run.run_id}",
            )
    thresholds = evaluation_report.get("thresholds", {})
    version_tags = {
        "decision": recorded,
        "reason": reason[:4000],
        "served_after": serve,
        **{name: str(value) for name, value in thresholds.items()},
    }
    tracking.tag_version(challenger_model.version, version_tags)
    if pointer is not None and pointer.version != challenger_model.version and serve in moves:
        tracking.tag_version(pointer.version, version_tags)
    batch_metrics.push_deployment(recorded, run_id=context.run.run_id)
    context.log.info("champion: %s, serving %s (%s)", recorded, serve, reason)
    return dg.MaterializeResult(
        value=None if pointer is None else pointer_dict(pointer),
        metadata={
            "decision": recorded,
            "serving": serve,
            "reason": reason,
            "moved": serve in moves,
            "champion_version": pointer.version if pointer else "none",
            "champion_kind": pointer.kind if pointer else "none",
            "previous_version": current.version if current else "none",
            "broken_pointer_replaced": broken or "",
            "pointer_uri": champion_store.pointer_uri,
            # the served version in the MLflow UI on a tracking server, its models:/ URI
            # otherwise (#14)
            **(
                {"mlflow_model_version": tracking.model_version_link(pointer.version)}
                if pointer
                else {}
            ),
        },
    )


def pointer_dict(pointer: ChampionPointer) -> dict[str, Any]:
    import json

    return dict(json.loads(pointer.to_json()))
