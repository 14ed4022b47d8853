"""Request timestamps -> tz-aware instants and the hour that contains them.

A timestamp without an offset is Europe/Paris wall-clock time (the counters' clock). Python's
`zoneinfo` rules apply to the two DST edge cases: an ambiguous autumn time takes its first
occurrence (summer time), a non-existent spring time is read with the offset before the change.

Hours are counted as whole hours since 1970-01-01T00:00Z. Paris offsets are whole hours, so the
UTC hour containing an instant is also its Paris hour. The model's features are hourly (hour,
weekday, day, holidays in Paris time), so the pipeline gives the same number for every instant of
an hour; answering with "the hour that contains the timestamp" is therefore exactly the
pipeline's answer, whether it comes from the forecast cache or from the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from bike_assets.settings import PARIS_TZ
from bike_serving.errors import InvalidInputError, shorten

PARIS = ZoneInfo(PARIS_TZ)
SECONDS_PER_HOUR = 3600
# Requests are limited to a range pandas, the holiday calendars and the model handle sensibly.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
_EARLIEST_S = EARLIEST.timestamp()
_LATEST_S = LATEST.timestamp()
_EARLIEST_H = int(_EARLIEST_S) // SECONDS_PER_HOUR
_LATEST_H = int(_LATEST_S) // SECONDS_PER_HOUR
_NS_PER_HOUR = SECONDS_PER_HOUR * 1_000_000_000
_SMALL_BATCH = 8
_FORMAT_HINT = (
    "expected an ISO 8601 timestamp such as 2024-06-03T08:00:00+02:00 "
    "(without an offset it is read as Europe/Paris time)"
)


class ParsedTimestamps(NamedTuple):
    instants: list[datetime]  # tz-aware; naive inputs carry Europe/Paris
    hours: NDArray[np.int64]  # the hour containing each instant, in hours since the epoch


def _invalid(field: str, text: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"{field}: {shorten(text)!r} is not usable: {why}", field)


def parse_timestamps(texts: Sequence[str], field: Callable[[int], str]) -> ParsedTimestamps:
    """Parse all `texts`; the first bad one raises a 422 naming `field(index)`.

    `fromisoformat` (C) decides what is valid and gives the instants echoed back; the hours come
    from plain Python floats for a few rows, from a vectorised parse for a batch. Finding the
    culprit row is done only on the error path.
    """
    fromiso = datetime.fromisoformat
    try:
        parsed = [fromiso(t) for t in texts]
    except ValueError:
        for i, text in enumerate(texts):
            try:
                fromiso(text)
            except ValueError:
                raise _invalid(field(i), text, _FORMAT_HINT) from None
        raise  # unreachable: the same input parsed twice differently
    instants = [d if d.tzinfo is not None else d.replace(tzinfo=PARIS) for d in parsed]
    hours = None if len(parsed) <= _SMALL_BATCH else _hours_vectorised(texts, parsed)
    if hours is None:
        # Per row. For a few rows this is also the fastest: numpy's per-call overhead dominates.
        seconds = [_safe_timestamp(d) for d in instants]
        for i, second in enumerate(seconds):
            if not _EARLIEST_S <= second < _LATEST_S:  # also refuses NaN
                raise _out_of_range(field(i), texts[i])
        hours = np.array([int(s // SECONDS_PER_HOUR) for s in seconds], dtype=np.int64)
        return ParsedTimestamps(instants, hours)
    outside = (hours < _EARLIEST_H) | (hours >= _LATEST_H)
    if outside.any():
        i = int(np.argmax(outside))
        raise _out_of_range(field(i), texts[i])
    return ParsedTimestamps(instants, hours)


def _hours_vectorised(texts: Sequence[str], parsed: list[datetime]) -> NDArray[np.int64] | None:
    """Hours of a batch by pandas' C ISO 8601 parser: `datetime.timestamp()` costs ~0.5 us a row
    with an offset and ~1.4 us naive, most of a 16,800-row request otherwise.

    The strings were validated by `fromisoformat` already; where pandas declines a form Python
    accepts (week dates, offsets with seconds, far years...), None sends the caller the per-row
    way. Both ways give the same hours (property-tested in test_serving_fuzz.py).
    Naive and offset strings are parsed apart: in one call (pandas 2.3, utc=True) a naive string
    that follows an offset one can be given that offset.
    """
    naive = np.fromiter((d.tzinfo is None for d in parsed), bool, len(parsed))
    strings = np.array(texts, dtype=object)
    ns = np.empty(len(parsed), dtype=np.int64)
    try:
        if not naive.all():
            aware = pd.to_datetime(strings[~naive], format="ISO8601", utc=True)
            ns[~naive] = pd.DatetimeIndex(aware).asi8
        if naive.any():
            wall = pd.DatetimeIndex(pd.to_datetime(strings[naive], format="ISO8601"))
            # Paris wall clock -> UTC with the choices of zoneinfo's fold=0: an ambiguous autumn
            # time is the first (summer-time) one, a time in the spring gap moves into summer time.
            # The ZoneInfo object, not the name: pandas 2 maps the name to pytz, whose Paris
            # rules stop in 2037 (no summer time after that).
            ns[naive] = wall.tz_localize(
                PARIS, ambiguous=np.ones(len(wall), dtype=bool), nonexistent="shift_forward"
            ).asi8
    except (ValueError, OverflowError, TypeError):  # includes OutOfBoundsDatetime
        return None
    return np.floor_divide(ns, _NS_PER_HOUR)


def _out_of_range(field: str, text: str) -> InvalidInputError:
    return _invalid(
        field, text, f"timestamps must be in [{EARLIEST.isoformat()}, {LATEST.isoformat()})"
    )


def _safe_timestamp(instant: datetime) -> float:
    try:
        return instant.timestamp()
    except (OverflowError, ValueError):
        return float("nan")  # reported as out of range by the caller


def check_series(first: int, hours: int, field: str) -> None:
    """A series of `hours` hours from `first` must stay in the range `/predict` accepts, so both
    endpoints answer the same hours (/forecast used to answer hours past 2100)."""
    if first < _EARLIEST_H or first + hours > _LATEST_H:
        raise InvalidInputError(
            f"{field}: the series would leave the supported range: "
            f"timestamps must be in [{EARLIEST.isoformat()}, {LATEST.isoformat()})",
            field,
        )


def parse_timestamp(text: str, field: str) -> ParsedTimestamps:
    return parse_timestamps([text], lambda _: field)


def hour_of(instant: datetime) -> int:
    return int(instant.timestamp() // SECONDS_PER_HOUR)


def next_full_hour(now: datetime) -> int:
    """The first hour starting at or after `now` (now itself when it is exactly on the hour)."""
    return -int(-now.timestamp() // SECONDS_PER_HOUR)


def hour_instants(hours: NDArray[np.int64]) -> list[datetime]:
    """Hours since the epoch as Europe/Paris datetimes (what /forecast shows)."""
    return [datetime.fromtimestamp(h * SECONDS_PER_HOUR, PARIS) for h in hours.tolist()]


def paris_day(now: datetime) -> date:
    return now.astimezone(PARIS).date()


def paris_day_hours(day: date, days: int) -> NDArray[np.int64]:
    """Every hour from Paris midnight of `day` to Paris midnight `days` days later (23 or 25
    hours on DST days, which is why this is not simply `days * 24`)."""
    start = datetime.combine(day, time(0), tzinfo=PARIS)
    end = datetime.combine(day + timedelta(days=max(days, 0)), time(0), tzinfo=PARIS)
    return np.arange(hour_of(start), hour_of(end), dtype=np.int64)
