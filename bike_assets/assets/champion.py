"""The champion: a pointer moved only by a DEPLOY (or an explicit, logged force / rollback)."""

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.assets.training import TrainedModel
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse

PROMOTION_LOG = "promotion_log"


class PromotionConfig(dg.Config):
    force: bool = Field(False, description="Promote the challenger whatever the decision (logged).")


def log_promotion(
    warehouse: Warehouse,
    *,
    run_id: str,
    decision: str,
    reason: str,
    forced: bool,
    challenger_version: str | None,
    previous_version: str | None,
    champion_version: str | None,
) -> None:
    warehouse.append(
        PROMOTION_LOG,
        pd.DataFrame(
            [
                {
                    "decided_at": datetime.now(UTC),
                    "run_id": run_id,
                    "decision": decision,
                    "reason": reason,
                    "forced": forced,
                    "challenger_version": challenger_version or "",
                    "previous_champion_version": previous_version or "",
                    "champion_version": champion_version or "",
                }
            ]
        ),
    )


def _safe_read(store: ChampionStore) -> tuple[ChampionPointer | None, str | None]:
    try:
        return store.read(), None
    except Exception as exc:  # a broken pointer is replaced by the next promotion, not fatal
        return None, str(exc)


@dg.asset(
    group_name="evaluation",
    kinds={"json", "mlflow"},
    io_manager_key="object_io_manager",
    description="Pointer to the model being served: {version, model_uri, trained_range, metrics, "
    "promoted_at, previous}. Moved atomically, only by a DEPLOY decision or a forced promotion.",
)
def champion(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    challenger_model: TrainedModel,
    evaluation_report: dict[str, Any],
    champion_store: ChampionStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
    alerts: DiscordResource,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    decision, reason = evaluation_report["decision"], evaluation_report["reason"]
    current, broken = _safe_read(champion_store)
    promote = decision == "DEPLOY" or config.force
    pointer: ChampionPointer | None
    if promote:
        challenger_scores = {
            split: result["scores"]["challenger"]
            for split, result in evaluation_report["splits"].items()
        }
        pointer = ChampionPointer(
            version=challenger_model.version,
            model_uri=challenger_model.model_uri,
            trained_range=challenger_model.trained_range,
            metrics={"evaluation_run_id": evaluation_report["run_id"], **challenger_scores},
            previous=current.summary() if current else None,
        )
        champion_store.write(pointer)
        tracking.set_champion(challenger_model.version)
        if config.force and decision != "DEPLOY":
            reason = f"forced promotion over {decision}: {reason}"
    else:
        pointer = current
    recorded = "DEPLOY" if promote else decision
    log_promotion(
        warehouse,
        run_id=context.run.run_id,
        decision=recorded,
        reason=reason,
        forced=config.force,
        challenger_version=challenger_model.version,
        previous_version=current.version if current else None,
        champion_version=pointer.version if pointer else None,
    )
    batch_metrics.push_deployment(recorded, run_id=context.run.run_id)
    if recorded == "DEPLOY":  # a REJECT was already announced by evaluation_report
        alerts.send(
            f"Model {recorded}: challenger v{challenger_model.version}",
            reason,
            level="info",
            dedup_key=f"promotion:{context.run.run_id}",
        )
    return dg.MaterializeResult(
        value=None if pointer is None else json_ready(pointer),
        metadata={
            "decision": recorded,
            "reason": reason,
            "moved": promote,
            "champion_version": pointer.version if pointer else "none",
            "previous_version": current.version if current else "none",
            "broken_pointer_replaced": broken or "",
            "pointer_uri": champion_store.pointer_uri,
        },
    )


def json_ready(pointer: ChampionPointer) -> dict[str, Any]:
    import json

    return dict(json.loads(pointer.to_json()))
