"""The decision thresholds as a resource, so assets and checks get them from the definitions
(`build_definitions(settings)`, the one reader of the environment) and the UI shows them."""

from __future__ import annotations

from dataclasses import asdict

import dagster as dg

from bike_assets.settings import Thresholds

_DEFAULTS = Thresholds()


class DecisionThresholds(dg.ConfigurableResource):  # type: ignore[misc]
    """The thresholds of `bike_assets.settings.Thresholds` (documented in .env.example)."""

    baseline_r2_floor: float = _DEFAULTS.baseline_r2_floor
    promotion_tolerance: float = _DEFAULTS.promotion_tolerance
    r2_critical: float = _DEFAULTS.r2_critical
    rmse_threshold: float = _DEFAULTS.rmse_threshold
    r2_warning: float = _DEFAULTS.r2_warning
    drift_critical: float = _DEFAULTS.drift_critical
    drift_warning: float = _DEFAULTS.drift_warning
    completeness_warn: float = _DEFAULTS.completeness_warn
    retrain_cooldown_days: float = _DEFAULTS.retrain_cooldown_days

    @classmethod
    def of(cls, thresholds: Thresholds) -> DecisionThresholds:
        return cls(**asdict(thresholds))

    def values(self) -> Thresholds:
        return Thresholds(**{name: getattr(self, name) for name in asdict(_DEFAULTS)})
