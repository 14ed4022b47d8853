"""Partitions shared by assets, jobs and schedules."""

from __future__ import annotations

import dagster as dg

from bike_assets.settings import PARIS_TZ, Settings

# Paris-local days: a partition is what Parisians call "a day", 23 or 25 hours at DST changes.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env().partitions_start.isoformat(),
    timezone=PARIS_TZ,
    fmt="%Y-%m-%d",
)
