"""Every row of the deployment decision table (`ml/promotion.py`), table-driven."""

import pytest

from bike_assets.ml.promotion import DeploymentDecision, ModelScores, decide_deployment


def scores(base_r2: float | None, cur_r2: float | None, cur_rmse: float = 10.0) -> ModelScores:
    return ModelScores(
        test_baseline=None if base_r2 is None else {"r2": base_r2, "rmse": 10.0},
        test_current=None if cur_r2 is None else {"r2": cur_r2, "rmse": cur_rmse},
    )


NAIVE = scores(0.5, 0.5, cur_rmse=20.0)


def decide(
    challenger: ModelScores, champion: ModelScores | None, **facts: bool
) -> DeploymentDecision:
    """decide_deployment against NAIVE with the thresholds every case here uses."""
    return decide_deployment(
        challenger=challenger,
        champion=champion,
        naive=NAIVE,
        baseline_r2_floor=0.6,
        tolerance=0.01,
        **facts,
    )


CASES = [
    # (name, challenger, champion, champion is naive, decision, serve, reason fragment)
    ("3a first model", scores(0.8, 0.8), None, False, "DEPLOY", "challenger", "no champion yet"),
    (
        "3a first model below the floor: nothing passes it, it beats the naive",
        scores(0.5, 0.8),
        None,
        False,
        "DEPLOY",
        "challenger",
        "no champion",
    ),
    (
        "3a champion is a naive",
        scores(0.8, 0.6),
        scores(0.8, 0.9),
        True,
        "DEPLOY",
        "challenger",
        "seasonal naive",
    ),
    (
        "3a champion trained on test_current",
        scores(0.8, 0.8),
        scores(0.8, None),
        False,
        "DEPLOY",
        "challenger",
        "cannot be scored",
    ),
    ("3b better", scores(0.8, 0.9), scores(0.8, 0.8), False, "DEPLOY", "challenger", "better"),
    (
        "3b equal within tolerance: fresher wins",
        scores(0.8, 0.795),
        scores(0.8, 0.8),
        False,
        "DEPLOY",
        "challenger",
        "newer data",
    ),
    (
        "3b exactly at -tolerance",
        scores(0.8, 0.79),
        scores(0.8, 0.8),
        False,
        "DEPLOY",
        "challenger",
        "newer data",
    ),
    (
        "3c champion clearly better",
        scores(0.8, 0.7),
        scores(0.8, 0.8),
        False,
        "SKIP",
        "champion",
        "-0.100",
    ),
    (
        "1 below the floor, champion passes, champion beats naive",
        scores(0.5, 0.9),
        scores(0.7, 0.7),
        False,
        "REJECT",
        "champion",
        "champion passes",
    ),
    (
        "both below the floor: judged on test_current",
        scores(0.5, 0.8),
        scores(0.55, 0.7),
        False,
        "DEPLOY",
        "challenger",
        "better",
    ),
    (
        "2 loses to naive, no champion: naive served",
        scores(0.8, 0.8, cur_rmse=25.0),
        None,
        False,
        "REJECT",
        "naive",
        "no champion",
    ),
    (
        "2 ties naive, champion beats naive: champion stays",
        scores(0.8, 0.8, cur_rmse=20.0),
        scores(0.8, 0.6, cur_rmse=15.0),
        False,
        "REJECT",
        "champion",
        "champion stays",
    ),
    (
        "5 loses to naive, naive beats champion too: naive served",
        scores(0.8, 0.4, cur_rmse=25.0),
        scores(0.8, 0.3, cur_rmse=30.0),
        False,
        "REJECT",
        "naive",
        "naive beats the champion",
    ),
    (
        "5 loses to naive, champion is an older naive: fresh naive",
        scores(0.8, 0.4, cur_rmse=25.0),
        scores(0.8, 0.45, cur_rmse=18.0),
        True,
        "REJECT",
        "naive",
        "older naive",
    ),
    (
        "4 loses to naive, champion trained on test_current: stays",
        scores(0.8, 0.4, cur_rmse=25.0),
        scores(0.8, None),
        False,
        "REJECT",
        "champion",
        "trained on the latest week",
    ),
]


@pytest.mark.parametrize(
    ("name", "challenger", "champion", "is_naive", "expected", "serve", "fragment"),
    CASES,
    ids=[c[0] for c in CASES],
)
def test_decision(
    name: str,
    challenger: ModelScores,
    champion: ModelScores | None,
    is_naive: bool,
    expected: str,
    serve: str,
    fragment: str,
) -> None:
    decision = decide(challenger, champion, champion_is_naive=is_naive)
    assert (decision.decision, decision.serve) == (expected, serve), decision.reason
    assert fragment in decision.reason


def test_every_outcome_names_what_is_served() -> None:
    served = {decide(c, ch, champion_is_naive=n).serve for _, c, ch, n, *_ in CASES}
    assert served == {"challenger", "champion", "naive"}


@pytest.mark.parametrize(
    ("champion", "fresher", "expected"),
    [
        (scores(0.8, 0.8), True, "DEPLOY"),  # 3c: a tie goes to the fresher data
        (scores(0.8, 0.8), False, "SKIP"),  # 3e: a tie on no newer data changes nothing
        (scores(0.8, None), True, "DEPLOY"),  # 3d
        (scores(0.8, None), False, "SKIP"),  # 3e: retrained on the same data
        (scores(0.8, 0.7), False, "DEPLOY"),  # 3b: better is better, fresh or not
    ],
)
def test_freshness_breaks_ties_only(champion: ModelScores, fresher: bool, expected: str) -> None:
    decision = decide(scores(0.8, 0.8), champion, challenger_is_fresher=fresher)
    assert decision.decision == expected, decision.reason
    assert ("newer data" in decision.reason) == (decision.reason.find("better:") < 0)
