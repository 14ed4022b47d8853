"""Evaluation: challenger vs champion vs seasonal naive on the same unseen rows, twice."""

import json
from typing import Any

import dagster as dg
import pandas as pd

from bike_assets.lifecycle.audit import record_decision
from bike_assets.lifecycle.champion_moves import read_champion
from bike_assets.lifecycle.evaluate import decide_on_splits, evaluate_split, scores_table
from bike_assets.lifecycle.trained import TrainedModel
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.report_store import ReportStore
from bike_assets.resources.thresholds import DecisionThresholds
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse


def _load_champion(
    store: ChampionStore, models: ModelStore
) -> tuple[Any, ChampionPointer | None, dict[str, Any]]:
    """(pipeline or None, pointer, status). A broken champion is reported, never fatal: the
    challenger is then judged against the naive only."""
    pointer, broken = read_champion(store)
    if broken:
        return None, None, {"status": "unloadable", "reason": f"pointer: {broken}"}
    if pointer is None:
        return None, None, {"status": "none", "reason": "no champion yet"}
    try:
        pipeline = models.load(pointer.model_uri)
    except Exception as exc:  # any artifact problem: judged without it, reported
        return (
            None,
            pointer,
            {
                "status": "unloadable",
                "version": pointer.version,
                "reason": f"artifact {pointer.model_uri}: {type(exc).__name__}: {exc}",
            },
        )
    return pipeline, pointer, {"status": "ok", "version": pointer.version, "kind": pointer.kind}


@dg.asset(
    group_name="evaluation",
    kinds={"scikit-learn"},
    io_manager_key="object_io_manager",
    description="Challenger (its evaluated artifact), champion and seasonal naive on the same "
    "unseen rows of test_baseline (the regression window) and test_current, and the decision: "
    "DEPLOY / SKIP / REJECT, and what is served afterwards (challenger, champion or naive).",
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    challenger_model: TrainedModel,
    train_baseline: pd.DataFrame,
    test_baseline: pd.DataFrame,
    train_current: pd.DataFrame,
    test_current: pd.DataFrame,
    model_store: ModelStore,
    champion_store: ChampionStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
    batch_metrics: BatchMetricsResource,
    report_store: ReportStore,
    decision_thresholds: DecisionThresholds,
) -> dg.MaterializeResult:
    thresholds = decision_thresholds.values()
    # the artifact fitted without the test windows; the served one is its refit
    challenger = model_store.load(challenger_model.evaluated_uri or challenger_model.model_uri)
    champion, pointer, champion_status = _load_champion(champion_store, model_store)
    if pointer is not None and pointer.version == challenger_model.version:
        champion, pointer = None, None
        champion_status = {"status": "none", "reason": "challenger is champion"}
    history = pd.concat([train_baseline, test_baseline, train_current], ignore_index=True)
    splits = {
        "test_baseline": evaluate_split(test_baseline, history, challenger, champion, pointer),
        "test_current": evaluate_split(test_current, history, challenger, champion, pointer),
    }
    champion_scored = any("champion" in s["scores"] for s in splits.values())
    decision = decide_on_splits(splits, challenger_model.trained_range, pointer, thresholds)
    if champion is not None and not champion_scored:
        champion_status["scored"] = "no: it trained on every test hour"
    report: dict[str, Any] = {
        "run_id": context.run.run_id,
        "challenger": {
            "version": challenger_model.version,
            "evaluated_range": challenger_model.evaluated_range,
            "served_range": challenger_model.trained_range,
        },
        "champion": champion_status,
        "splits": splits,
        "decision": decision.decision,
        "serve": decision.serve,
        "reason": decision.reason,
        "thresholds": {
            "baseline_r2_floor": thresholds.baseline_r2_floor,
            "promotion_tolerance": thresholds.promotion_tolerance,
        },
    }
    tracking.log_metrics(
        challenger_model.mlflow_run_id,
        {
            f"{split}_{name}_{metric}": value
            for split, result in splits.items()
            for name, scores in result["scores"].items()
            for metric, value in scores.items()
        },
    )
    # beside the model in MLflow, and where the deployment keeps reports, linked (#14)
    tracking.log_dict(
        challenger_model.mlflow_run_id,
        report,
        f"evaluation/report_v{challenger_model.version}.json",
    )
    stored = report_store.put(
        f"evaluation_v{challenger_model.version}.json",
        json.dumps(report, indent=2, default=str).encode(),
        "application/json",
    )
    record_decision(
        warehouse,
        kind="evaluation",
        decision=decision.decision,
        value=splits["test_current"]["scores"]["challenger"]["r2"],
        detail=f"challenger v{challenger_model.version}: {decision.reason}",
        run_id=context.run.run_id,
    )
    batch_metrics.push_evaluation(
        {split: result["scores"] for split, result in splits.items()},
        decision.decision,
        reason_kind=f"serve_{decision.serve}",
        run_id=context.run.run_id,
    )
    table = scores_table(report)
    context.log.info(
        "evaluation:\n%s\ndecision: %s, serve %s (%s)",
        table,
        decision.decision,
        decision.serve,
        decision.reason,
    )
    return dg.MaterializeResult(
        value=report,
        metadata={
            "decision": decision.decision,
            "serve": decision.serve,
            "reason": decision.reason,
            "champion": dg.MetadataValue.json(champion_status),
            "scores": dg.MetadataValue.md(table),
            "report": stored.link(),
            "report_uri": dg.MetadataValue.path(stored.uri),
            "challenger_version": challenger_model.version,
        },
    )


@dg.asset_check(
    asset=evaluation_report,
    blocking=True,
    description="The challenger predicts no NaN or negative count (a broken model stops the "
    "run). Losing to the naive is not a failure: it is a REJECT decision, recorded.",
)
def challenger_is_sane(evaluation_report: dict[str, Any]) -> dg.AssetCheckResult:
    splits = evaluation_report["splits"].values()
    nan = sum(s["challenger_nan_predictions"] for s in splits)
    neg = sum(s["challenger_negative_predictions"] for s in splits)
    current = evaluation_report["splits"]["test_current"]["scores"]
    return dg.AssetCheckResult(
        passed=nan == 0 and neg == 0,
        metadata={
            "nan_predictions": nan,
            "negative_predictions": neg,
            "beats_naive": bool(current["challenger"]["rmse"] < current["naive"]["rmse"]),
            "decision": evaluation_report["decision"],
        },
    )
