"""The retraining decision matrix, as a pure function of measured facts.

Levels, first match wins:

| level | when                                                             | retrain | alert |
|-------|------------------------------------------------------------------|---------|-------|
| P0    | the force flag is set                                            | yes     | yes   |
| P1    | reactive: champion R2 < r2_critical  or  RMSE > rmse_threshold   | yes     | yes   |
| P2    | proactive: drift share >= drift_critical  and  R2 < r2_warning   | yes     | yes   |
| P3    | wait: drift share >= drift_warning                               | no      | yes   |
| P4    | all good (or nothing measured to act on)                         | no      | no    |

Boundaries are exactly as written: R2 and RMSE comparisons are strict (R2 == r2_critical is not
P1, RMSE == rmse_threshold is not P1, R2 == r2_warning does not satisfy P2), drift comparisons
are inclusive (share == drift_critical or == drift_warning counts), matching Evidently, which
flags a column drifted at score >= threshold.

Missing facts are never invented: health that is absent or `insufficient_data` (too few scored
rows), or with a non-finite R2/RMSE, is "no health facts", so P1 and P2 cannot fire (P2 needs a
real R2: high drift with an unknown R2 is P3, an alert, never a retrain). Drift that is absent,
`not_computed` or without a finite share is "no drift information", so P2 and P3 cannot fire.
Every reason sentence says which facts were missing, so a P4 "all good" with nothing measured is
visible as such.

Cool-down (`apply_cooldown`, after the matrix): at most one sensor-requested retrain per
`cooldown_days`, because `champion_health` is refreshed daily and P1/P2 would otherwise ask for a
retrain every day while the new data has not changed much:

| matrix said         | last sensor-requested retrain | result                                    |
|---------------------|-------------------------------|-------------------------------------------|
| no retrain (P3, P4) | any                           | unchanged                                 |
| P0 (forced)         | any                           | unchanged: a person asked for it          |
| P1, P2              | none, or >= cooldown_days ago | unchanged                                 |
| P1, P2              | < cooldown_days ago           | no retrain, alert kept; the reason says   |
|                     |                               | when the last one was and the next may be |
| any                 | cooldown_days <= 0            | unchanged (cool-down disabled)            |

The boundary is inclusive on the allowed side: exactly `cooldown_days` after the last request
may retrain again. A last request in the future (clock skew) counts as "just now".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from bike_assets.settings import Thresholds

Level = Literal["P0", "P1", "P2", "P3", "P4"]
HealthState = Literal["ok", "insufficient_data"]
DriftFactsState = Literal["computed", "not_computed"]


@dataclass(frozen=True)
class HealthFacts:
    """The champion's scores on recent labelled data."""

    r2: float | None
    rmse: float | None
    rows: int
    state: HealthState = "ok"


@dataclass(frozen=True)
class DriftFacts:
    """The measured drift share (`DriftResult.share`)."""

    share: float | None
    state: DriftFactsState = "computed"


@dataclass(frozen=True)
class RetrainDecision:
    level: Level
    retrain: bool
    alert: bool
    reason: str
    held_by_cooldown: bool = False


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _n(value: float) -> str:
    """Enough digits that a value next to a threshold never prints equal to it."""
    return f"{value:.6g}"


def _usable_health(health: HealthFacts | None) -> tuple[float | None, float | None]:
    """(r2, rmse), each None unless really measured (state ok and a finite number)."""
    if health is None or health.state != "ok":
        return None, None
    return _finite(health.r2), _finite(health.rmse)


def _usable_share(drift: DriftFacts | None) -> float | None:
    if drift is None or drift.state != "computed":
        return None
    return _finite(drift.share)


def _health_text(health: HealthFacts | None) -> str:
    if health is None:
        return "no champion health measured"
    if health.state == "insufficient_data":
        return f"champion health not measured (insufficient data: {health.rows} rows)"
    r2, rmse = _usable_health(health)
    r2_text = "R2 not measured" if r2 is None else f"R2={_n(r2)}"
    rmse_text = "RMSE not measured" if rmse is None else f"RMSE={_n(rmse)}"
    return f"champion {r2_text}, {rmse_text} on {health.rows} rows"


def _drift_text(drift: DriftFacts | None) -> str:
    if drift is None:
        return "no drift measured"
    share = _usable_share(drift)
    if share is None:
        return "drift not computed"
    return f"drift share={_n(share)}"


def decide_retrain(
    *,
    force: bool,
    health: HealthFacts | None,
    drift: DriftFacts | None,
    thresholds: Thresholds,
) -> RetrainDecision:
    """First matching level of the matrix in the module docstring."""
    t = thresholds
    facts = f"{_health_text(health)}; {_drift_text(drift)}"
    r2, rmse = _usable_health(health)
    share = _usable_share(drift)

    if force:
        return RetrainDecision("P0", True, True, f"P0 forced retraining requested ({facts})")

    broken: list[str] = []
    if r2 is not None and r2 < t.r2_critical:
        broken.append(f"R2 {_n(r2)} < r2_critical {_n(t.r2_critical)}")
    if rmse is not None and rmse > t.rmse_threshold:
        broken.append(f"RMSE {_n(rmse)} > rmse_threshold {_n(t.rmse_threshold)}")
    if broken:
        return RetrainDecision(
            "P1", True, True, f"P1 reactive retraining: {' and '.join(broken)} ({facts})"
        )

    if share is not None and r2 is not None and share >= t.drift_critical and r2 < t.r2_warning:
        return RetrainDecision(
            "P2",
            True,
            True,
            f"P2 proactive retraining: drift share {_n(share)} >= drift_critical "
            f"{_n(t.drift_critical)} and R2 {_n(r2)} < r2_warning {_n(t.r2_warning)} ({facts})",
        )

    if share is not None and share >= t.drift_warning:
        if share < t.drift_critical:
            why = f"share below drift_critical {_n(t.drift_critical)}"
        elif r2 is None:
            why = "R2 not measured, drift alone never retrains"
        else:
            why = f"R2 {_n(r2)} >= r2_warning {_n(t.r2_warning)}"
        return RetrainDecision(
            "P3",
            False,
            True,
            f"P3 wait and watch: drift share {_n(share)} >= drift_warning "
            f"{_n(t.drift_warning)}, no retraining: {why} ({facts})",
        )

    return RetrainDecision("P4", False, False, f"P4 nothing to do ({facts})")


def apply_cooldown(
    decision: RetrainDecision,
    *,
    last_requested_at: datetime | None,
    now: datetime,
    cooldown_days: float,
) -> RetrainDecision:
    """The decision once the cool-down table of the module docstring is applied.

    `last_requested_at` is when the sensor last requested a retrain (None: never); both datetimes
    must be timezone-aware.
    """
    if not decision.retrain or decision.level == "P0" or cooldown_days <= 0:
        return decision
    if last_requested_at is None:
        return decision
    next_allowed = last_requested_at + timedelta(days=cooldown_days)
    if now >= next_allowed:
        return decision
    return replace(
        decision,
        retrain=False,
        held_by_cooldown=True,
        reason=(
            f"cool-down: {decision.level} would retrain, but the last sensor-requested retrain was "
            f"at {last_requested_at.isoformat(timespec='seconds')} and RETRAIN_COOLDOWN_DAYS="
            f"{_n(cooldown_days)} allows the next one from "
            f"{next_allowed.isoformat(timespec='seconds')} ({decision.reason})"
        ),
    )
