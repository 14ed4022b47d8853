"""Evaluation: challenger vs champion vs seasonal naive on the same unseen rows, twice."""

import json
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from bike_assets.assets.monitoring import record_decision
from bike_assets.assets.training import TrainedModel
from bike_assets.ml.metrics import mae_per_counter, score
from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.ml.naive import seasonal_naive
from bike_assets.ml.promotion import ModelScores, decide_deployment
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import Settings

MODELS = ("challenger", "champion", "naive")


def _load_champion(store: ChampionStore, models: ModelStore) -> tuple[Any, dict[str, Any]]:
    """(pipeline or None, status). A broken champion is reported, never fatal: the challenger
    is then judged against naive only."""
    try:
        pointer = store.read()
    except Exception as exc:
        return None, {"status": "unloadable", "reason": f"pointer: {exc}"}
    if pointer is None:
        return None, {"status": "none", "reason": "no champion yet"}
    try:
        pipeline = models.load(pointer.model_uri)
    except Exception as exc:
        return None, {
            "status": "unloadable",
            "version": pointer.version,
            "reason": f"artifact {pointer.model_uri}: {exc}",
        }
    return pipeline, {"status": "ok", "version": pointer.version, "model_uri": pointer.model_uri}


def evaluate_split(
    test: pd.DataFrame, history: pd.DataFrame, challenger: Any, champion: Any | None
) -> dict[str, Any]:
    """Scores of every model on the same rows: those whose counter every model knows."""
    known = set(known_counters(challenger))
    if champion is not None:
        known &= set(known_counters(champion))
    rows = test[test["counter_id"].astype(str).isin(known)].reset_index(drop=True)
    preds = {"challenger": predict_counts(challenger, rows), "naive": seasonal_naive(history, rows)}
    if champion is not None:
        preds["champion"] = predict_counts(champion, rows)
    raw_challenger = np.asarray(challenger.predict(rows.loc[:, ["counter_id", "timestamp"]]))
    return {
        "rows": len(rows),
        "rows_excluded_unknown_counter": len(test) - len(rows),
        "first_hour_utc": str(rows["timestamp"].min()),
        "last_hour_utc": str(rows["timestamp"].max()),
        "scores": {name: score(rows["count"], p) for name, p in preds.items()},
        "per_counter_mae": {
            name: mae_per_counter(rows["counter_id"], rows["count"], p) for name, p in preds.items()
        },
        "challenger_nan_predictions": int(np.isnan(raw_challenger).sum()),
        "challenger_negative_predictions": int((raw_challenger < 0).sum()),
    }


def scores_table(report: dict[str, Any]) -> str:
    rows = []
    for split in ("test_baseline", "test_current"):
        for model, s in report["splits"][split]["scores"].items():
            rows.append(
                {
                    "split": split,
                    "model": model,
                    "R²": s["r2"],
                    "RMSE": s["rmse"],
                    "MAE": s["mae"],
                    "log-RMSE": s["rmse_log1p"],
                    "rows": int(s["rows"]),
                }
            )
    return pd.DataFrame(rows).round(3).to_markdown(index=False)


@dg.asset(
    group_name="evaluation",
    kinds={"scikit-learn"},
    io_manager_key="object_io_manager",
    description="Challenger, champion and seasonal naive on the same rows of test_baseline and "
    "test_current, and the deployment decision with its reason.",
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
    alerts: DiscordResource,
) -> dg.MaterializeResult:
    settings = Settings.from_env()
    thresholds = settings.thresholds
    challenger = model_store.load(challenger_model.model_uri)  # the artifact that would be served
    champion, champion_status = _load_champion(champion_store, model_store)
    if champion is not None and champion_status.get("version") == challenger_model.version:
        champion, champion_status = None, {"status": "none", "reason": "challenger is champion"}
    history = pd.concat([train_baseline, test_baseline, train_current], ignore_index=True)
    splits = {
        "test_baseline": evaluate_split(test_baseline, history, challenger, champion),
        "test_current": evaluate_split(test_current, history, challenger, champion),
    }

    def model_scores(name: str) -> ModelScores:
        return ModelScores(
            test_baseline=splits["test_baseline"]["scores"][name],
            test_current=splits["test_current"]["scores"][name],
        )

    decision = decide_deployment(
        challenger=model_scores("challenger"),
        champion=model_scores("champion") if champion is not None else None,
        naive_current=splits["test_current"]["scores"]["naive"],
        baseline_r2_floor=thresholds.baseline_r2_floor,
        deploy_min_gain=thresholds.deploy_min_gain,
    )
    report: dict[str, Any] = {
        "run_id": context.run.run_id,
        "challenger": {
            "version": challenger_model.version,
            "model_uri": challenger_model.model_uri,
            "trained_range": challenger_model.trained_range,
        },
        "champion": champion_status,
        "splits": splits,
        "decision": decision.decision,
        "reason": decision.reason,
        "thresholds": {
            "baseline_r2_floor": thresholds.baseline_r2_floor,
            "deploy_min_gain": thresholds.deploy_min_gain,
        },
    }
    tracking.log_metrics(
        challenger_model.mlflow_run_id,
        {
            f"{split}_{metric}": value
            for split, result in splits.items()
            for metric, value in result["scores"]["challenger"].items()
        },
    )
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    path = settings.reports_dir / f"evaluation_v{challenger_model.version}.json"
    if settings.env == "local":
        path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    # Logged here, not only by `champion`: a REJECT by the naive gate stops the run before it.
    record_decision(
        warehouse,
        kind="evaluation",
        decision=decision.decision,
        value=splits["test_current"]["scores"]["challenger"]["r2"],
        detail=f"challenger v{challenger_model.version}: {decision.reason}",
        run_id=context.run.run_id,
    )
    if decision.decision == "REJECT":
        alerts.send(
            f"Model REJECT: challenger v{challenger_model.version}",
            decision.reason,
            level="warning",
            dedup_key=f"evaluation:{context.run.run_id}",
        )
    table = scores_table(report)
    context.log.info(
        "evaluation:\n%s\ndecision: %s (%s)", table, decision.decision, decision.reason
    )
    return dg.MaterializeResult(
        value=report,
        metadata={
            "decision": decision.decision,
            "reason": decision.reason,
            "champion": dg.MetadataValue.json(champion_status),
            "scores": dg.MetadataValue.md(table),
            "report_path": dg.MetadataValue.path(str(path)),
            "challenger_version": challenger_model.version,
        },
    )


@dg.asset_check(
    asset=evaluation_report,
    blocking=True,
    description="The challenger beats seasonal naive on test_current and predicts no NaN or "
    "negative count; a failure stops promotion in this run.",
)
def challenger_is_sane(evaluation_report: dict[str, Any]) -> dg.AssetCheckResult:
    current = evaluation_report["splits"]["test_current"]
    ch, naive = current["scores"]["challenger"], current["scores"]["naive"]
    nan = sum(s["challenger_nan_predictions"] for s in evaluation_report["splits"].values())
    neg = sum(s["challenger_negative_predictions"] for s in evaluation_report["splits"].values())
    beats = bool(ch["rmse"] < naive["rmse"])
    return dg.AssetCheckResult(
        passed=beats and nan == 0 and neg == 0,
        metadata={
            "challenger_rmse": ch["rmse"],
            "naive_rmse": naive["rmse"],
            "beats_naive": beats,
            "nan_predictions": nan,
            "negative_predictions": neg,
        },
    )
