"""The deployment decision: a pure function of out-of-sample scores and thresholds.

Scores come from `evaluation_report`: challenger, champion and seasonal naive on the SAME rows
of test_baseline (the regression window, never trained on) and test_current (the latest week;
the champion is scored only on hours after its own training data, see `evaluation_report`).

`decision` says what happened to the challenger, `serve` what is served afterwards:

| # | facts                                                               | decision | serve      |
|---|---------------------------------------------------------------------|----------|------------|
| 1 | challenger R² on test_baseline < floor, and the champion passes it   | REJECT   | see 4-5    |
| 2 | challenger RMSE on test_current >= naive's (the naive gate)          | REJECT   | see 4-5    |
| 3a| passed 1-2; no champion, or the champion is a naive (a model that   | DEPLOY   | challenger |
|   | beats today's naive beats an older one)                              |          |            |
| 3b| passed 1-2; R² gain >= +tolerance over the champion                  | DEPLOY   | challenger |
| 3c| passed 1-2; R² gain within ±tolerance, challenger saw newer data     | DEPLOY   | challenger |
| 3d| passed 1-2; the champion trained on test_current (cannot be scored   | DEPLOY   | challenger |
|   | there) and the challenger saw newer data                             |          |            |
| 3e| passed 1-2; as 3c or 3d but no newer data than the champion          | SKIP     | champion   |
| 3f| passed 1-2; R² gain < -tolerance (the champion is clearly better)    | SKIP     | champion   |
| 4 | rejected; a model champion beats the naive on test_current, or was   | REJECT   | champion   |
|   | trained on it (promoted days ago: nothing says it got worse)         |          |            |
| 5 | rejected; no champion, a naive champion, or one the naive beats      | REJECT   | naive      |

Rules 3c-3e are the forecasting rule: at equal quality (within `tolerance`) the model trained on
fresher data wins, because keeping an older champion out of caution serves staler forecasts;
a retrain on no newer data changes nothing.
Rule 5 keeps the promise that the platform always serves something at least as good as the
seasonal naive, refreshed with the latest weeks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Decision = Literal["DEPLOY", "SKIP", "REJECT"]
Served = Literal["challenger", "champion", "naive"]
Scores = Mapping[str, float]  # r2, rmse, mae, rmse_log1p
# Thresholds are written in decimal (0.02); 0.82 - 0.80 is 0.01999... in binary floating point.
_EPS = 1e-9


@dataclass(frozen=True)
class ModelScores:
    test_baseline: Scores | None  # None: not scored there (e.g. trained on those hours)
    test_current: Scores | None


@dataclass(frozen=True)
class DeploymentDecision:
    decision: Decision
    serve: Served
    reason: str


def _r2(scores: Scores | None) -> float | None:
    return None if scores is None else float(scores["r2"])


def decide_deployment(
    *,
    challenger: ModelScores,
    champion: ModelScores | None,
    naive: ModelScores,
    champion_is_naive: bool = False,
    challenger_is_fresher: bool = True,
    baseline_r2_floor: float,
    tolerance: float,
) -> DeploymentDecision:
    """Apply the table of the module docstring. `champion` is None when there is none (or it
    cannot be loaded); its splits are None where it could not be scored out of sample.
    `challenger_is_fresher`: the challenger's served artifact saw hours later than the
    champion's."""
    rejection = _rejection(challenger, champion, naive, baseline_r2_floor)
    if rejection is not None:
        return _after_rejection(rejection, champion, naive, champion_is_naive)
    ch_cur = _r2(challenger.test_current)
    champ_cur = None if champion is None else _r2(champion.test_current)
    if champion is None or champion_is_naive or ch_cur is None:
        why = "no champion yet" if champion is None else "the champion is a seasonal naive"
        return DeploymentDecision("DEPLOY", "challenger", f"{why}; challenger beats the naive")
    if champ_cur is None:
        tie = "the champion trained on the latest week, so it cannot be scored there"
    else:
        gain = ch_cur - champ_cur
        versus = f"({ch_cur:.3f} vs champion {champ_cur:.3f} on test_current)"
        if gain >= tolerance - _EPS:
            return DeploymentDecision(
                "DEPLOY", "challenger", f"better: R² gain {gain:+.3f} {versus}"
            )
        if gain < -tolerance - _EPS:
            return DeploymentDecision(
                "SKIP",
                "champion",
                f"the champion is better: R² gain {gain:+.3f} < -{tolerance:.3f} {versus}",
            )
        tie = f"as good within {tolerance:.3f} (R² gain {gain:+.3f}) {versus}"
    if challenger_is_fresher:
        return DeploymentDecision("DEPLOY", "challenger", f"{tie}; the challenger saw newer data")
    return DeploymentDecision("SKIP", "champion", f"{tie}; no newer data than the champion")


def _rejection(
    challenger: ModelScores,
    champion: ModelScores | None,
    naive: ModelScores,
    floor: float,
) -> str | None:
    ch_base = _r2(challenger.test_baseline)
    if ch_base is not None and ch_base < floor:
        champ_base = None if champion is None else _r2(champion.test_baseline)
        if champ_base is not None and champ_base >= floor:
            return (
                f"challenger R² on test_baseline {ch_base:.3f} < floor {floor:.2f} while the "
                f"champion passes it ({champ_base:.3f})"
            )
    ch_cur, naive_cur = challenger.test_current, naive.test_current
    if ch_cur is None or naive_cur is None:
        return "challenger or naive could not be scored on test_current"
    if not ch_cur["rmse"] < naive_cur["rmse"]:
        return (
            f"challenger does not beat the seasonal naive on test_current "
            f"(RMSE {ch_cur['rmse']:.2f} vs {naive_cur['rmse']:.2f})"
        )
    return None


def _after_rejection(
    rejection: str, champion: ModelScores | None, naive: ModelScores, champion_is_naive: bool
) -> DeploymentDecision:
    champ_cur = None if champion is None else champion.test_current
    naive_cur = naive.test_current
    if champion is not None and not champion_is_naive:
        if champ_cur is None:
            return DeploymentDecision(
                "REJECT",
                "champion",
                f"{rejection}; the champion stays (it trained on the latest week, so nothing "
                "out of sample says it got worse)",
            )
        if naive_cur is not None and champ_cur["rmse"] < naive_cur["rmse"]:
            return DeploymentDecision(
                "REJECT",
                "champion",
                f"{rejection}; the champion stays (it beats the naive: RMSE "
                f"{champ_cur['rmse']:.2f} vs {naive_cur['rmse']:.2f})",
            )
    why = (
        "there is no champion"
        if champion is None
        else "the champion is an older naive"
        if champion_is_naive
        else "the naive beats the champion on the latest week"
    )
    return DeploymentDecision(
        "REJECT", "naive", f"{rejection}; {why}: the seasonal naive is served"
    )
