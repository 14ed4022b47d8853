"""Sensors: the platform watching itself.

`retrain_sensor` contract:
- it decides once per **complete monitoring pass**: while a run that materialized the latest
  `drift_report` or `champion_health` is still in progress (weekly_monitor_job materializes one,
  then the other), it waits, so a half-finished pass never triggers anything;
- the facts it acted on (the runs of those two materializations) are its cursor and the
  `RunRequest`'s run key, so the same reports never trigger twice, even across daemon restarts;
- P1/P2 retrains obey the cool-down (`apply_cooldown`); the skip message says why;
- resources (alerts, warehouse) are injected by Dagster, configured once in
  `resources/factory.py`, not rebuilt from the environment on every tick.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from bike_assets.jobs import retrain_job
from bike_assets.lifecycle.audit import record_decision
from bike_assets.monitoring.retrain_decision import (
    DriftFacts,
    HealthFacts,
    RetrainDecision,
    apply_cooldown,
    decide_retrain,
)
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.warehouse import Warehouse
from bike_assets.settings import Settings, Thresholds

RETRAIN_SENSOR = "retrain_sensor"
# Set on every run the sensor requests; the cool-down counts runs carrying it. A tag of our own
# rather than Dagster's dagster/sensor_name, so a requested run executed by other means (the demo
# runs the RunRequest in process) still counts.
REQUESTED_BY_TAG = "bike/requested_by"


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


def unfinished_run(instance: dg.DagsterInstance, events: list[Any]) -> str | None:
    """The id of a run that produced one of `events` and has not finished yet, if any."""
    for event in events:
        if not event.run_id:  # reported outside a run
            continue
        run = instance.get_run_by_id(event.run_id)
        if run is not None and not run.is_finished:
            return str(event.run_id)
    return None


def last_sensor_retrain_at(instance: dg.DagsterInstance) -> datetime | None:
    """When the sensor last requested a retrain (the newest run carrying REQUESTED_BY_TAG)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=retrain_job.name, tags={REQUESTED_BY_TAG: RETRAIN_SENSOR}),
        limit=1,
    )
    if not records:
        return None
    created = records[0].create_timestamp
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _decide(
    context: dg.SensorEvaluationContext,
    thresholds: Thresholds,
    health_event: Any,
    drift_event: Any,
) -> RetrainDecision:
    health, drift, force = facts_from_metadata(
        _metadata(health_event) if health_event else None,
        _metadata(drift_event) if drift_event else None,
    )
    decision = decide_retrain(force=force, health=health, drift=drift, thresholds=thresholds)
    if not decision.retrain or decision.level == "P0":
        return decision  # no need to look up past runs
    return apply_cooldown(
        decision,
        last_requested_at=last_sensor_retrain_at(context.instance),
        now=datetime.now(UTC),
        cooldown_days=thresholds.retrain_cooldown_days,
    )


def build_retrain_sensor(settings: Settings) -> dg.SensorDefinition:
    """`retrain_sensor` with the thresholds and tick interval of `settings`."""
    thresholds = settings.thresholds

    @dg.sensor(
        name=RETRAIN_SENSOR,
        job=retrain_job,
        minimum_interval_seconds=settings.retrain_sensor_interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Applies the P0-P4 decision matrix and the retrain cool-down to each complete "
        "monitoring pass (drift_report + champion_health); launches retrain_job once per pass "
        "that calls for it.",
    )
    def retrain_sensor(
        context: dg.SensorEvaluationContext,
        alerts: DiscordResource,
        warehouse: Warehouse,
        batch_metrics: BatchMetricsResource,
    ) -> Any:
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
        running = unfinished_run(instance, [e for e in (drift_event, health_event) if e])
        if running is not None:
            # Not yet a complete pass: the other report of that run may still come.
            return dg.SkipReason(f"monitoring pass in progress (run {running}); deciding after it")
        decision = _decide(context, thresholds, health_event, drift_event)
        context.update_cursor(key)
        batch_metrics.push_retrain_decision(decision.level)  # the dashboards' decision level
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
                f"Retraining decision {decision.level}"
                + (" (held by the cool-down)" if decision.held_by_cooldown else ""),
                decision.reason,
                level="warning" if decision.level in ("P1", "P2") else "info",
                dedup_key=f"retrain-decision:{key}",
            )
        if decision.retrain:
            return dg.RunRequest(
                run_key=key,
                tags={
                    REQUESTED_BY_TAG: RETRAIN_SENSOR,
                    "bike/retrain_level": decision.level,
                    "bike/retrain_reason": decision.reason[:200],
                },
            )
        return dg.SkipReason(
            decision.reason if decision.held_by_cooldown else f"{decision.level}: {decision.reason}"
        )

    return retrain_sensor


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="One alert per failed run of any job of this code location.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext,
    alerts: DiscordResource,
    batch_metrics: BatchMetricsResource,
) -> None:
    run = context.dagster_run
    if run.job_name == retrain_job.name:
        batch_metrics.push_training("failed", run_id=run.run_id)
    alerts.send(
        f"Run failed: {run.job_name}",
        f"run {run.run_id}: {context.failure_event.message}",
        level="error",
        dedup_key=f"run-failure:{run.run_id}",
    )


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    return [build_retrain_sensor(settings), run_failure_alert_sensor]
