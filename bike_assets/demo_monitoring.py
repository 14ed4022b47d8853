"""Step 4 of `bike demo`: watch the champion, let retrain_sensor decide, act on its decision."""

from __future__ import annotations

from typing import Any

import dagster as dg


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, **kwargs: Any) -> None:
    from bike_assets.cli import QUIET

    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, **kwargs
    )
    if not result.success:
        raise SystemExit(f"{job} failed; see `dagster dev` for the run's logs")


def monitor_and_maybe_retrain(defs: dg.Definitions, instance: dg.DagsterInstance) -> bool:
    """Materialize the monitoring assets, evaluate retrain_sensor once, run what it requests."""
    _run(defs, instance, "daily_predictions_job")
    _run(defs, instance, "weekly_monitor_job")
    health: Any = defs.load_asset_value("champion_health", instance=instance)
    drift: Any = defs.load_asset_value("drift_report", instance=instance)
    r2, rmse = health.get("r2"), health.get("rmse")
    print(
        f"champion_health: state={health['state']} rows={health['rows']} "
        + (f"R²={r2:.3f} RMSE={rmse:.1f}" if r2 is not None else f"({health.get('reason')})")
    )
    share = drift.get("share")
    print(
        f"drift_report: state={drift['state']} "
        + (
            f"share={share:.2f} ({drift['drifted_columns']}/{drift['n_columns']} columns)"
            if share is not None
            else f"({drift.get('reason')})"
        )
    )
    for name, column in sorted(drift.get("columns", {}).items()):
        print(
            f"    {name:<20} {column['method']:<28} score={column['score']:.3f} "
            f"{'DRIFT' if column['drifted'] else ''}"
        )
    sensor = defs.get_sensor_def("retrain_sensor")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    requests = [
        r
        for r in (result if isinstance(result, list) else [result])
        if isinstance(r, dg.RunRequest)
    ]
    if not requests:
        print(f"retrain_sensor: {getattr(result, 'skip_message', result)}")
        return False
    request = requests[0]
    print(
        f"retrain_sensor: RunRequest run_key={request.run_key} "
        f"level={request.tags.get('bike/retrain_level')}: {request.tags.get('bike/retrain_reason')}"
    )
    from bike_assets.cli import retrain

    retrain(defs, instance, tags=dict(request.tags))
    return True
