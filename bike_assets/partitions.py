"""Partitions shared by assets, jobs and schedules."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from bike_assets.settings import PARIS_TZ, Settings

_START = Settings.from_env().partitions_start

# Paris-local days: a partition is what Parisians call "a day", 23 or 25 hours at DST changes.
# A day exists once it is over (`end_offset=0`): raw_counts of day D arrive after D.
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=_START.isoformat(),
    timezone=PARIS_TZ,
    fmt="%Y-%m-%d",
)

# The Paris day a forecast is issued on. Today is a partition as soon as it starts
# (`end_offset=1`): the forecast issued on day D is made during D, from the counts of D-1 and
# before, so the first issue day is the day after the first day of counts.
issue_days = dg.DailyPartitionsDefinition(
    start_date=(_START + timedelta(days=1)).isoformat(),
    timezone=PARIS_TZ,
    fmt="%Y-%m-%d",
    end_offset=1,
)
