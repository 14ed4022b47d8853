"""Schedules, all in Europe/Paris."""

import dagster as dg

from bike_assets.jobs import daily_predictions_job, ingest_job, weekly_monitor_job

PARIS = "Europe/Paris"

# 02:00 Paris: yesterday's partition (the API publishes day J-1 overnight).
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job, hour_of_day=2, minute_of_hour=0, name="daily_ingest_schedule"
)

# 04:00 Paris: after ingestion, so forecasts start right after the newest counted hour.
daily_predictions_schedule = dg.ScheduleDefinition(
    name="daily_predictions_schedule",
    job=daily_predictions_job,
    cron_schedule="0 4 * * *",
    execution_timezone=PARIS,
)

# Sunday 05:00 Paris: a full week of fresh hours to compare with the reference.
weekly_monitor_schedule = dg.ScheduleDefinition(
    name="weekly_monitor_schedule",
    job=weekly_monitor_job,
    cron_schedule="0 5 * * 0",
    execution_timezone=PARIS,
)
