"""Sensors: the platform watching itself."""

import math
from typing import Any

import dagster as dg

from bike_assets.assets.monitoring import record_decision
from bike_assets.jobs import retrain_job
from bike_assets.monitoring.retrain_decision import DriftFacts, HealthFacts, decide_retrain
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.factory import build_resources
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import Settings


def _metadata(event: Any) -> dict[str, Any]:
    """Plain values of a materialization's metadata."""
    materialization = event.asset_materialization
    return {k: getattr(v, "value", v) for k, v in (materialization.metadata or {}).items()}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def facts_from_metadata(
    health: dict[str, Any] | None, drift: dict[str, Any] | None
) -> tuple[HealthFacts | None, DriftFacts | None, bool]:
    health_facts = None
    if health is not None:
        health_facts = HealthFacts(
            r2=_number(health.get("r2")),
            rmse=_number(health.get("rmse")),
            rows=int(health.get("rows") or 0),
            state="ok" if health.get("state") == "ok" else "insufficient_data",
        )
    drift_facts = None
    if drift is not None:
        drift_facts = DriftFacts(
            share=_number(drift.get("drift_share")),
            state="computed" if drift.get("state") == "computed" else "not_computed",
        )
    force = bool(drift and drift.get("force_retrain"))
    return health_facts, drift_facts, force


def _alerts_and_warehouse() -> tuple[DiscordResource, Warehouse]:
    resources = build_resources(Settings.from_env())
    return resources["alerts"], resources["warehouse"]


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Applies the P0-P4 decision matrix to the latest drift_report and "
    "champion_health; launches retrain_job once per pair of reports that calls for it.",
)
def retrain_sensor(context: dg.SensorEvaluationContext) -> Any:
    # Resources come from the settings, not from injection, so the sensor also evaluates with a
    # bare `build_sensor_context(instance=...)` (the platform's contract for external checks).
    alerts, warehouse = _alerts_and_warehouse()
    instance = context.instance
    drift_event = instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
    health_event = instance.get_latest_materialization_event(dg.AssetKey("champion_health"))
    if drift_event is None and health_event is None:
        return dg.SkipReason("no drift_report or champion_health materialization yet")
    # The facts that trigger a run: these two materializations. Same facts, same key.
    key = (
        f"drift-{drift_event.run_id if drift_event else 'none'}"
        f"-health-{health_event.run_id if health_event else 'none'}"
    )
    if context.cursor == key:
        return dg.SkipReason(f"already decided on these reports ({key})")
    health, drift, force = facts_from_metadata(
        _metadata(health_event) if health_event else None,
        _metadata(drift_event) if drift_event else None,
    )
    decision = decide_retrain(
        force=force, health=health, drift=drift, thresholds=Settings.from_env().thresholds
    )
    context.update_cursor(key)
    try:
        record_decision(
            warehouse,
            kind="retrain",
            decision=decision.level,
            value=None,
            detail=decision.reason,
            run_id=f"sensor:{key}",
        )
    except Exception as exc:  # the audit row must not stop the platform from acting
        context.log.warning("could not write decision_log: %s", exc)
    if decision.alert:
        alerts.send(
            f"Retraining decision {decision.level}",
            decision.reason,
            level="warning" if decision.level in ("P1", "P2") else "info",
            dedup_key=f"retrain-decision:{key}",
        )
    if decision.retrain:
        return dg.RunRequest(
            run_key=key,
            tags={
                "bike/retrain_level": decision.level,
                "bike/retrain_reason": decision.reason[:200],
            },
        )
    return dg.SkipReason(f"{decision.level}: {decision.reason}")


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="One alert per failed run of any job of this code location.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    resources = build_resources(Settings.from_env())
    alerts: DiscordResource = resources["alerts"]
    batch_metrics: BatchMetricsResource = resources["batch_metrics"]
    run = context.dagster_run
    if run.job_name == retrain_job.name:
        batch_metrics.push_training("failed", run_id=run.run_id)
    alerts.send(
        f"Run failed: {run.job_name}",
        f"run {run.run_id}: {context.failure_event.message}",
        level="error",
        dedup_key=f"run-failure:{run.run_id}",
    )
