"""Paris days as UTC instants: where the platform's days start and which is the last whole one.

A Paris day is 23 or 25 hours long at DST changes, so a day's start is computed by localizing
the calendar date, never by adding 24 hours to a UTC instant.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from bike_assets.settings import PARIS_TZ


def paris_day_start(day: date | str, offset_days: int = 0) -> pd.Timestamp:
    """Start of the Paris day `day` (a date or YYYY-MM-DD) + `offset_days`, in UTC."""
    local = (pd.Timestamp(str(day)) + pd.Timedelta(days=offset_days)).tz_localize(PARIS_TZ)
    return local.tz_convert("UTC")


def last_whole_day(last_hour: pd.Timestamp) -> date:
    """The last Paris day whose every hour is at or before `last_hour` (hour-start stamps): a
    half-ingested day does not count, its missing hours would read as a traffic drop."""
    # the hour after the last one falls in the first day that is not whole
    after = last_hour + pd.Timedelta(hours=1)
    return after.tz_convert(PARIS_TZ).date() - timedelta(days=1)
