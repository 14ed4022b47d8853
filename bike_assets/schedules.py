"""Schedules, all in Europe/Paris."""

import dagster as dg

from bike_assets.jobs import ingest_job

# 02:00 Paris: yesterday's partition (the API publishes day J-1 overnight).
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job, hour_of_day=2, minute_of_hour=0, name="daily_ingest_schedule"
)
