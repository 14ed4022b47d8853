"""The deployment decision: a pure function of out-of-sample scores and thresholds.

Scores come from `evaluation_report`: challenger, champion and seasonal naive on the SAME rows of
test_baseline (regression check) and test_current (improvement check).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Decision = Literal["DEPLOY", "SKIP", "REJECT"]
Scores = Mapping[str, float]  # r2, rmse, mae, rmse_log1p
# Thresholds are written in decimal (0.02); 0.82 - 0.80 is 0.01999... in binary floating point.
_EPS = 1e-9


@dataclass(frozen=True)
class ModelScores:
    test_baseline: Scores
    test_current: Scores


@dataclass(frozen=True)
class DeploymentDecision:
    decision: Decision
    reason: str


def decide_deployment(
    *,
    challenger: ModelScores,
    champion: ModelScores | None,
    naive_current: Scores,
    baseline_r2_floor: float,
    deploy_min_gain: float,
) -> DeploymentDecision:
    ch_base = challenger.test_baseline["r2"]
    ch_cur = challenger.test_current["r2"]
    if ch_base < baseline_r2_floor:
        champion_fails_too = (
            champion is not None and champion.test_baseline["r2"] < baseline_r2_floor
        )
        if not champion_fails_too:
            return DeploymentDecision(
                "REJECT",
                f"challenger R² on test_baseline {ch_base:.3f} < floor {baseline_r2_floor:.2f}"
                + (
                    ""
                    if champion is None
                    else f" while the champion passes it ({champion.test_baseline['r2']:.3f})"
                ),
            )
    if not challenger.test_current["rmse"] < naive_current["rmse"]:
        return DeploymentDecision(
            "REJECT",
            f"challenger does not beat seasonal naive on test_current "
            f"(RMSE {challenger.test_current['rmse']:.2f} vs {naive_current['rmse']:.2f})",
        )
    floor_note = (
        f" (both fail the baseline floor {baseline_r2_floor:.2f})"
        if ch_base < baseline_r2_floor
        else ""
    )
    if champion is None:
        return DeploymentDecision(
            "DEPLOY", f"no champion yet; challenger beats naive on test_current{floor_note}"
        )
    gain = ch_cur - champion.test_current["r2"]
    if gain >= deploy_min_gain - _EPS:
        return DeploymentDecision(
            "DEPLOY",
            f"R² gain on test_current {gain:+.3f} >= {deploy_min_gain:.3f} "
            f"({ch_cur:.3f} vs champion {champion.test_current['r2']:.3f}){floor_note}",
        )
    return DeploymentDecision(
        "SKIP",
        f"R² gain on test_current {gain:+.3f} < {deploy_min_gain:.3f} "
        f"({ch_cur:.3f} vs champion {champion.test_current['r2']:.3f}){floor_note}",
    )
