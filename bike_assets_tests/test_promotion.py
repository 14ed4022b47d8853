"""Every branch of the deployment decision, table-driven."""

import pytest

from bike_assets.ml.promotion import ModelScores, decide_deployment


def scores(base_r2: float, cur_r2: float, cur_rmse: float = 10.0) -> ModelScores:
    return ModelScores(
        test_baseline={"r2": base_r2, "rmse": 10.0},
        test_current={"r2": cur_r2, "rmse": cur_rmse},
    )


NAIVE = {"r2": 0.5, "rmse": 20.0}

CASES = [
    # (name, challenger, champion, expected decision, reason fragment)
    ("first model", scores(0.8, 0.8), None, "DEPLOY", "no champion yet"),
    ("first model fails the floor", scores(0.5, 0.8), None, "REJECT", "< floor"),
    (
        "fails floor, champion passes",
        scores(0.5, 0.9),
        scores(0.7, 0.7),
        "REJECT",
        "champion passes",
    ),
    ("both fail the floor, gain above", scores(0.5, 0.8), scores(0.55, 0.7), "DEPLOY", "both fail"),
    ("both fail the floor, gain below", scores(0.5, 0.71), scores(0.55, 0.7), "SKIP", "both fail"),
    ("gain below threshold", scores(0.8, 0.81), scores(0.8, 0.8), "SKIP", "< 0.020"),
    ("gain exactly at threshold", scores(0.8, 0.82), scores(0.8, 0.8), "DEPLOY", ">= 0.020"),
    ("gain above threshold", scores(0.8, 0.9), scores(0.8, 0.8), "DEPLOY", ">= 0.020"),
    ("challenger worse than champion", scores(0.8, 0.7), scores(0.8, 0.8), "SKIP", "-0.100"),
    ("loses to naive", scores(0.8, 0.8, cur_rmse=25.0), None, "REJECT", "naive"),
    ("ties naive", scores(0.8, 0.8, cur_rmse=20.0), scores(0.8, 0.5), "REJECT", "naive"),
]


@pytest.mark.parametrize(
    ("name", "challenger", "champion", "expected", "fragment"), CASES, ids=[c[0] for c in CASES]
)
def test_decision(
    name: str, challenger: ModelScores, champion: ModelScores | None, expected: str, fragment: str
) -> None:
    decision = decide_deployment(
        challenger=challenger,
        champion=champion,
        naive_current=NAIVE,
        baseline_r2_floor=0.6,
        deploy_min_gain=0.02,
    )
    assert decision.decision == expected
    assert fragment in decision.reason
