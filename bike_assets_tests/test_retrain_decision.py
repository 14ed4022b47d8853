"""The retraining decision matrix, table-driven over every level and every boundary."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg
import pytest

from bike_assets.monitoring.retrain_decision import (
    DriftFacts,
    HealthFacts,
    RetrainDecision,
    apply_cooldown,
    decide_retrain,
)
from bike_assets.sensors import (
    REQUESTED_BY_TAG,
    RETRAIN_SENSOR,
    last_sensor_retrain_at,
    unfinished_run,
)
from bike_assets.settings import Thresholds
from bike_assets_tests.conftest import Platform

T = Thresholds()  # r2_critical 0.45, rmse_threshold 90, r2_warning 0.55, drift 0.5 / 0.3
EPS = 1e-9


def healthy(r2: float = 0.80, rmse: float = 40.0, rows: int = 5_000) -> HealthFacts:
    return HealthFacts(r2=r2, rmse=rmse, rows=rows, state="ok")


def drift(share: float) -> DriftFacts:
    return DriftFacts(share=share, state="computed")


INSUFFICIENT = HealthFacts(r2=None, rmse=None, rows=12, state="insufficient_data")
NOT_COMPUTED = DriftFacts(share=None, state="not_computed")

# (id, force, health, drift, expected level)
CASES: list[tuple[str, bool, HealthFacts | None, DriftFacts | None, str]] = [
    # P0 wins over everything, even with nothing measured or everything fine
    ("force-nothing-measured", True, None, None, "P0"),
    ("force-all-good", True, healthy(), drift(0.0), "P0"),
    ("force-over-p1", True, healthy(r2=0.1, rmse=500.0), drift(1.0), "P0"),
    # P1 reactive: R2 strictly below r2_critical
    ("p1-r2-just-below", False, healthy(r2=T.r2_critical - EPS), None, "P1"),
    ("p1-r2-exactly-at-is-not-p1", False, healthy(r2=T.r2_critical), None, "P4"),
    ("p1-r2-just-above", False, healthy(r2=T.r2_critical + EPS), None, "P4"),
    # P1 reactive: RMSE strictly above rmse_threshold
    ("p1-rmse-just-above", False, healthy(rmse=T.rmse_threshold + EPS), None, "P1"),
    ("p1-rmse-exactly-at-is-not-p1", False, healthy(rmse=T.rmse_threshold), None, "P4"),
    ("p1-rmse-just-below", False, healthy(rmse=T.rmse_threshold - EPS), None, "P4"),
    ("p1-both", False, healthy(r2=0.2, rmse=120.0), drift(0.0), "P1"),
    ("p1-over-p2", False, healthy(r2=0.3), drift(0.9), "P1"),
    # P1 with one score missing still uses the measured one
    ("p1-rmse-only", False, HealthFacts(r2=None, rmse=95.0, rows=100), None, "P1"),
    ("p1-r2-nan-rmse-fine", False, HealthFacts(r2=math.nan, rmse=40.0, rows=100), None, "P4"),
    # P2 proactive: share >= drift_critical (inclusive) and R2 < r2_warning (strict)
    ("p2-both-at-boundary", False, healthy(r2=T.r2_warning - EPS), drift(T.drift_critical), "P2"),
    ("p1-r2-at-critical-falls-to-p2", False, healthy(r2=T.r2_critical), drift(0.5), "P2"),
    ("p2-share-high", False, healthy(r2=0.50), drift(0.9), "P2"),
    ("p2-share-just-below-critical", False, healthy(r2=0.50), drift(T.drift_critical - EPS), "P3"),
    ("p2-r2-exactly-warning", False, healthy(r2=T.r2_warning), drift(0.9), "P3"),
    ("p2-r2-just-above-warning", False, healthy(r2=T.r2_warning + EPS), drift(0.9), "P3"),
    # P2 needs a real R2: high drift with no health facts is only an alert
    ("p2-needs-health", False, None, drift(0.9), "P3"),
    ("p2-insufficient-health", False, INSUFFICIENT, drift(0.9), "P3"),
    # P3 wait: share >= drift_warning (inclusive)
    ("p3-exactly-warning", False, healthy(), drift(T.drift_warning), "P3"),
    ("p3-just-below-warning", False, healthy(), drift(T.drift_warning - EPS), "P4"),
    ("p3-high-drift-good-model", False, healthy(r2=0.9), drift(1.0), "P3"),
    # P4 all good, and nothing measured is never an invented alarm
    ("p4-all-good", False, healthy(), drift(0.1), "P4"),
    ("p4-nothing-measured", False, None, None, "P4"),
    ("p4-insufficient-and-not-computed", False, INSUFFICIENT, NOT_COMPUTED, "P4"),
    # insufficient health carrying numbers is still no health facts: P1 cannot fire
    (
        "insufficient-health-numbers-ignored",
        False,
        HealthFacts(r2=0.1, rmse=300.0, rows=3, state="insufficient_data"),
        None,
        "P4",
    ),
    # not-computed drift carrying a share is still no drift information
    ("not-computed-share-ignored", False, healthy(r2=0.5), DriftFacts(0.9, "not_computed"), "P4"),
    ("drift-nan-share", False, healthy(r2=0.5), drift(math.nan), "P4"),
]

EXPECTED_FLAGS = {
    "P0": (True, True),
    "P1": (True, True),
    "P2": (True, True),
    "P3": (False, True),
    "P4": (False, False),
}


@pytest.mark.parametrize(
    ("force", "health", "drift_facts", "level"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_matrix(
    force: bool, health: HealthFacts | None, drift_facts: DriftFacts | None, level: str
) -> None:
    decision = decide_retrain(force=force, health=health, drift=drift_facts, thresholds=T)
    assert isinstance(decision, RetrainDecision)
    assert decision.level == level, decision.reason
    assert (decision.retrain, decision.alert) == EXPECTED_FLAGS[level]
    assert decision.reason.startswith(level)


def test_every_level_is_covered() -> None:
    assert {case[4] for case in CASES} == set(EXPECTED_FLAGS)


def test_reason_has_the_numbers_and_thresholds() -> None:
    decision = decide_retrain(
        force=False, health=healthy(r2=0.5, rmse=70.0), drift=drift(0.67), thresholds=T
    )
    assert decision.level == "P2"
    for text in ("0.67", "0.5", "0.55", "R2", "drift_critical", "r2_warning", "RMSE=70"):
        assert text in decision.reason


def test_reason_near_a_threshold_does_not_print_equal_numbers() -> None:
    decision = decide_retrain(force=False, health=healthy(r2=0.449999), drift=None, thresholds=T)
    assert "R2 0.449999 < r2_critical 0.45" in decision.reason


def test_reason_says_what_was_not_measured() -> None:
    decision = decide_retrain(force=False, health=INSUFFICIENT, drift=NOT_COMPUTED, thresholds=T)
    assert "insufficient data: 12 rows" in decision.reason
    assert "drift not computed" in decision.reason


def test_thresholds_come_from_the_argument() -> None:
    strict = Thresholds(r2_critical=0.9)
    decision = decide_retrain(force=False, health=healthy(r2=0.8), drift=None, thresholds=strict)
    assert decision.level == "P1"
    assert "r2_critical 0.9" in decision.reason


def test_decision_is_frozen() -> None:
    decision = decide_retrain(force=False, health=None, drift=None, thresholds=T)
    with pytest.raises(AttributeError):
        decision.level = "P0"  # type: ignore[misc]


# --- cool-down (at most one sensor-requested retrain per cooldown_days unless P0) -------------

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WEEK = 7.0
P1 = decide_retrain(force=False, health=healthy(r2=0.2), drift=None, thresholds=T)
P2 = decide_retrain(force=False, health=healthy(r2=0.5), drift=drift(0.9), thresholds=T)
P0 = decide_retrain(force=True, health=healthy(r2=0.2), drift=None, thresholds=T)
P3 = decide_retrain(force=False, health=healthy(), drift=drift(0.4), thresholds=T)
P4 = decide_retrain(force=False, health=healthy(), drift=drift(0.0), thresholds=T)
JUST_NOW = NOW - timedelta(minutes=1)

# (id, matrix decision, last sensor-requested retrain, cooldown_days, retrains after cool-down)
COOLDOWN_CASES: list[tuple[str, RetrainDecision, datetime | None, float, bool]] = [
    ("p1-never-retrained", P1, None, WEEK, True),
    ("p1-one-minute-ago", P1, JUST_NOW, WEEK, False),
    ("p2-one-minute-ago", P2, JUST_NOW, WEEK, False),
    ("p1-six-days-ago", P1, NOW - timedelta(days=6), WEEK, False),
    ("p1-just-under-the-cooldown", P1, NOW - timedelta(days=7) + timedelta(seconds=1), WEEK, False),
    ("p1-exactly-the-cooldown-ago", P1, NOW - timedelta(days=7), WEEK, True),
    ("p1-eight-days-ago", P1, NOW - timedelta(days=8), WEEK, True),
    ("p0-forced-one-minute-ago", P0, JUST_NOW, WEEK, True),
    ("p1-cooldown-disabled", P1, JUST_NOW, 0.0, True),
    ("p1-negative-cooldown-disabled", P1, JUST_NOW, -1.0, True),
    ("p1-half-day-cooldown-passed", P1, NOW - timedelta(hours=13), 0.5, True),
    ("p1-last-in-the-future-is-just-now", P1, NOW + timedelta(hours=1), WEEK, False),
    ("p3-never-retrains", P3, None, WEEK, False),
    ("p4-never-retrains", P4, JUST_NOW, WEEK, False),
]


@pytest.mark.parametrize(
    ("decision", "last", "cooldown_days", "retrains"),
    [pytest.param(*case[1:], id=case[0]) for case in COOLDOWN_CASES],
)
def test_cooldown(
    decision: RetrainDecision, last: datetime | None, cooldown_days: float, retrains: bool
) -> None:
    after = apply_cooldown(decision, last_requested_at=last, now=NOW, cooldown_days=cooldown_days)
    assert after.retrain is retrains
    assert after.level == decision.level  # the matrix's verdict is kept, only the action changes
    assert after.alert == decision.alert
    held = decision.retrain and not retrains
    assert after.held_by_cooldown is held
    if not held:
        assert after == decision


def test_a_held_decision_says_why_and_when() -> None:
    last = NOW - timedelta(days=2)
    after = apply_cooldown(P1, last_requested_at=last, now=NOW, cooldown_days=WEEK)
    assert after.reason.startswith("cool-down: P1 would retrain")
    assert "2026-11-28T12:00:00+00:00" in after.reason  # the last request
    assert "2026-12-05T12:00:00+00:00" in after.reason  # the next allowed one
    assert "RETRAIN_COOLDOWN_DAYS=7" in after.reason
    assert P1.reason in after.reason  # and what the matrix measured


def test_cooldown_days_come_from_the_environment() -> None:
    assert Thresholds().retrain_cooldown_days == 7.0
    assert Thresholds.from_env({"RETRAIN_COOLDOWN_DAYS": "2.5"}).retrain_cooldown_days == 2.5


# --- the sensor's adapters of these rules, on a real Dagster instance ---------------------------


def test_the_cooldown_counts_only_runs_the_sensor_requested(platform: Platform) -> None:
    retrain = platform.defs.resolve_job_def("retrain_job")
    assert last_sensor_retrain_at(platform.instance) is None
    before = datetime.now(UTC)
    platform.instance.create_run_for_job(retrain, tags={REQUESTED_BY_TAG: RETRAIN_SENSOR})
    requested_at = last_sensor_retrain_at(platform.instance)
    platform.instance.create_run_for_job(retrain)  # a person's retrain does not count
    assert requested_at is not None and requested_at >= before - timedelta(seconds=1)
    assert last_sensor_retrain_at(platform.instance) == requested_at


def test_a_report_of_an_unfinished_run_is_not_a_complete_pass(platform: Platform) -> None:
    monitor = platform.defs.resolve_job_def("weekly_monitor_job")
    run = platform.instance.create_run_for_job(monitor, status=dg.DagsterRunStatus.STARTED)
    report = SimpleNamespace(run_id=run.run_id)  # the part of an event the rule reads
    assert unfinished_run(platform.instance, [report]) == run.run_id
    platform.instance.report_run_failed(run)  # failed or succeeded: the pass is over
    assert unfinished_run(platform.instance, [report]) is None
    assert unfinished_run(platform.instance, [SimpleNamespace(run_id="")]) is None  # no run
