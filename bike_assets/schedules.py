"""What starts runs on its own: the ingestion schedule and the declarative automation sensor.

Ingestion is the one clock-driven step (the Paris API publishes day J-1 overnight, and nothing
upstream in Dagster can say it has). Everything downstream is driven by data state: the
conditions beside the assets in `assets/monitoring.py`, evaluated by the sensor below. The
former `daily_predictions_schedule` (04:00) and `weekly_monitor_schedule` (Sunday 05:00) fired
whether or not the counts had arrived; the conditions replace them, so they are gone.
"""

import dagster as dg

from bike_assets.jobs import ingest_job

# 02:00 Paris: yesterday's partition (the API publishes day J-1 overnight).
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job, hour_of_day=2, minute_of_hour=0, name="daily_ingest_schedule"
)

# Declared instead of left to Dagster, whose implicit sensor of the same name starts STOPPED:
# the forecasts must not wait for someone to find a switch in the UI. Same name, so the docs'
# and the UI's "default_automation_condition_sensor" is this one.
default_automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates every asset's automation condition: predictions once yesterday's "
    "raw_counts landed; champion_health and drift_report once the week is over.",
)
