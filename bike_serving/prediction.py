"""Counts for requests: from the forecast window when the hour is in it, else from the day cache
(whole days computed by one pipeline call on first use, `day_cache`).

Where the work runs matters more than its size: everything on the event loop delays every other
request. So a model call always goes to a worker thread (milliseconds at least), and a big batch
is answered entirely in a worker thread (parsing and looking up 16,800 rows holds the loop ~10 ms
otherwise); a small request stays on the loop, where a thread hop would cost more than the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from bike_serving.champion import LoadedChampion
from bike_serving.day_cache import DaysAnswer
from bike_serving.metrics import ServingMetrics
from bike_serving.timestamps import parse_timestamps

OFFLOAD_RECORDS = 2_000


class Answer(NamedTuple):
    instants: list[datetime]  # the request's timestamps, tz-aware (naive ones in Paris time)
    values: NDArray[np.float64]  # predicted counts, in input order
    sources: Sources


class Sources(NamedTuple):
    """How many counts came from the forecast window, cached days, a row-by-row pipeline call."""

    window: int
    days: int
    pipeline: int


def _timestamp_field(i: int) -> str:
    return f"records[{i}].timestamp"


def _counter_field(i: int) -> str:
    return f"records[{i}].counter_id"


def _parsed(
    champion: LoadedChampion, counter_ids: Sequence[str], timestamps: Sequence[str]
) -> tuple[list[datetime], NDArray[np.intp], NDArray[np.int64]]:
    """Parse and validate (422s name the record)."""
    parsed = parse_timestamps(timestamps, _timestamp_field)
    return parsed.instants, champion.codes_for(counter_ids, _counter_field), parsed.hours


def _merged(
    values: NDArray[np.float64], miss: NDArray[np.bool_], rest: DaysAnswer
) -> tuple[NDArray[np.float64], Sources]:
    """The window's values with the day cache's answer for the rows it missed."""
    values[miss] = rest.values
    return values, Sources(len(miss) - len(rest.values), rest.from_days, rest.from_pipeline)


def _predict_blocking(
    champion: LoadedChampion, codes: NDArray[np.intp], hours: NDArray[np.int64]
) -> tuple[NDArray[np.float64], Sources]:
    values, hit = champion.cache.lookup(codes, hours)
    if hit.all():
        return values, Sources(len(hit), 0, 0)
    miss = ~hit
    return _merged(values, miss, champion.days.predict_blocking(codes[miss], hours[miss]))


async def _predict(
    champion: LoadedChampion, codes: NDArray[np.intp], hours: NDArray[np.int64]
) -> tuple[NDArray[np.float64], Sources]:
    values, hit = champion.cache.lookup(codes, hours)
    if hit.all():
        return values, Sources(len(hit), 0, 0)
    miss = ~hit
    return _merged(values, miss, await champion.days.predict(codes[miss], hours[miss]))


def _records_blocking(
    champion: LoadedChampion, counter_ids: Sequence[str], timestamps: Sequence[str]
) -> Answer:
    instants, codes, hours = _parsed(champion, counter_ids, timestamps)
    return Answer(instants, *_predict_blocking(champion, codes, hours))


async def predict_records(
    champion: LoadedChampion,
    counter_ids: Sequence[str],
    timestamps: Sequence[str],
    metrics: ServingMetrics,
) -> Answer:
    if len(timestamps) > OFFLOAD_RECORDS:
        answer = await anyio.to_thread.run_sync(
            _records_blocking, champion, counter_ids, timestamps
        )
    else:
        instants, codes, hours = _parsed(champion, counter_ids, timestamps)
        answer = Answer(instants, *await _predict(champion, codes, hours))
    metrics.predicted(*answer.sources)
    return answer


async def predict_hours(
    champion: LoadedChampion,
    codes: NDArray[np.intp],
    hours: NDArray[np.int64],
    metrics: ServingMetrics,
) -> NDArray[np.float64]:
    """Counts of already validated (counter code, hour) pairs, e.g. a /forecast series."""
    values, sources = await _predict(champion, codes, hours)
    metrics.predicted(*sources)
    return values
