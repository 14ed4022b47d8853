"""Step 4 of `bike demo`: the forecast history, its score, the drift, and retrain_sensor.

The demo ingested weeks that nobody forecast at the time, so it backfills their issue days (what
the automation would have issued each morning: counts before each day only, the champion being
served), then scores those published forecasts and lets retrain_sensor decide.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg

from bike_assets.demo.retrain import retrain
from bike_assets.demo.runner import asset_value, range_tags, run_job


def backfill_issue_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: date, last: date
) -> None:
    """Issue the forecasts of Paris days first..last in one run (a backfill of `predictions`)."""
    result = run_job(defs, instance, "daily_predictions_job", tags=range_tags(first, last))
    events = result.get_asset_materialization_events()
    metadata = [e.step_materialization_data.materialization.metadata for e in events]
    rows = sum(int(getattr(m.get("dagster/row_count"), "value", 0) or 0) for m in metadata)
    version = getattr(metadata[-1].get("model_version"), "value", "?") if metadata else "?"
    print(
        f"predictions: issue days {first} .. {last} backfilled ({len(metadata)} partitions, "
        f"{rows:,} hourly forecasts by champion v{version}, each from the counts before its day)"
    )


def monitor_and_maybe_retrain(
    defs: dg.Definitions, instance: dg.DagsterInstance, first_issue: date, last_issue: date
) -> bool:
    """Backfill the forecast history, score it and measure drift (the weekly monitoring),
    evaluate retrain_sensor once, run what it requests."""
    backfill_issue_days(defs, instance, first_issue, last_issue)
    monitored = run_job(defs, instance, "weekly_monitor_job")
    health: Any = asset_value(defs, instance, monitored, "champion_health")
    drift: Any = asset_value(defs, instance, monitored, "drift_report")
    r2, rmse, mae = health.get("r2"), health.get("rmse"), health.get("mae")
    print(
        f"champion_health: state={health['state']} rows={health['rows']} "
        + (
            f"R²={r2:.3f} RMSE={rmse:.1f} MAE={mae:.1f} on the forecasts published by "
            f"v{health.get('version')} ({health.get('issues_scored')} issue days, mean lead "
            f"{health.get('mean_lead_hours'):.1f} h)"
            if r2 is not None
            else f"({health.get('reason')})"
        )
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
    sensor = defs.resolve_sensor_def("retrain_sensor")
    # the code location's resources, as the daemon gives them (`definitions=` alone does not
    # reach a sensor that is called directly)
    with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
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
    retrain(defs, instance, tags=dict(request.tags))
    return True
