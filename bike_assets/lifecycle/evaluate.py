"""Scoring challenger, champion and naive on the same unseen rows, and deciding on it.

Used by the `evaluation_report` asset and by `bench/model_quality.py --rolling`, so the bench
replays exactly the platform's decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bike_assets.lifecycle.unseen import unseen_mask
from bike_assets.ml.metrics import mae_per_counter, score
from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.ml.naive import seasonal_naive
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.ml.promotion import DeploymentDecision, ModelScores, decide_deployment
from bike_assets.settings import Thresholds

# Fewer hours than this outside the champion's training data say nothing about it: the champion
# is then not scored on that split (and the decision table says what that means).
MIN_UNSEEN_HOURS = 24


def evaluate_split(
    test: pd.DataFrame,
    history: pd.DataFrame,
    challenger: Any,
    champion: Any | None,
    champion_pointer: ChampionPointer | None,
) -> dict[str, Any]:
    """Scores of every model on the same rows: those whose counter every model knows and,
    when the champion is scored, only hours outside its training data (never in-sample)."""
    known = set(known_counters(challenger))
    if champion is not None:
        known &= set(known_counters(champion))
    rows = test[test["counter_id"].astype(str).isin(known)].reset_index(drop=True)
    champion_note = "no champion"
    if champion is not None and champion_pointer is not None:
        unseen = unseen_mask(rows["timestamp"], champion_pointer.trained_range)
        if rows.loc[unseen, "timestamp"].nunique() >= MIN_UNSEEN_HOURS:
            dropped = int((~unseen).sum())
            rows = rows.loc[unseen].reset_index(drop=True)
            champion_note = f"scored on hours outside its training data ({dropped} rows left out)"
        else:
            champion, champion_note = None, "not scored: it trained on these hours"
    preds = {"challenger": predict_counts(challenger, rows), "naive": seasonal_naive(history, rows)}
    if champion is not None:
        preds["champion"] = predict_counts(champion, rows)
    raw_challenger = np.asarray(challenger.predict(rows.loc[:, ["counter_id", "timestamp"]]))
    return {
        "rows": len(rows),
        "rows_excluded_unknown_counter": int((~test["counter_id"].astype(str).isin(known)).sum()),
        "first_hour_utc": str(rows["timestamp"].min()),
        "last_hour_utc": str(rows["timestamp"].max()),
        "champion": champion_note,
        "scores": {name: score(rows["count"], p) for name, p in preds.items()},
        "per_counter_mae": {
            name: mae_per_counter(rows["counter_id"], rows["count"], p) for name, p in preds.items()
        },
        "challenger_nan_predictions": int(np.isnan(raw_challenger).sum()),
        "challenger_negative_predictions": int((raw_challenger < 0).sum()),
    }


def _end(trained_range: dict[str, Any]) -> pd.Timestamp:
    """The end of a training range (the earliest possible when unknown)."""
    end = trained_range.get("end")
    return pd.Timestamp(end).tz_convert("UTC") if end else pd.Timestamp.min.tz_localize("UTC")


def _scores(splits: dict[str, Any], name: str) -> ModelScores:
    return ModelScores(
        test_baseline=splits["test_baseline"]["scores"].get(name),
        test_current=splits["test_current"]["scores"].get(name),
    )


def decide_on_splits(
    splits: dict[str, Any],
    challenger_range: dict[str, Any],
    champion: ChampionPointer | None,
    thresholds: Thresholds,
) -> DeploymentDecision:
    """`decide_deployment` on the scores of `evaluate_split` for test_baseline/test_current."""
    champion_scored = any("champion" in s["scores"] for s in splits.values())
    return decide_deployment(
        challenger=_scores(splits, "challenger"),
        champion=_scores(splits, "champion") if champion_scored else None,
        naive=_scores(splits, "naive"),
        champion_is_naive=champion is not None and champion.kind == "naive",
        challenger_is_fresher=champion is None
        or _end(challenger_range) > _end(champion.trained_range),
        baseline_r2_floor=thresholds.baseline_r2_floor,
        tolerance=thresholds.promotion_tolerance,
    )


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
