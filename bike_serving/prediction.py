"""Counts for requests: from the forecast cache when the hour is in it, else from the pipeline.

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
from bike_serving.metrics import ServingMetrics
from bike_serving.timestamps import parse_timestamps

OFFLOAD_RECORDS = 2_000


class Answer(NamedTuple):
    instants: list[datetime]  # the request's timestamps, tz-aware (naive ones in Paris time)
    values: NDArray[np.float64]  # predicted counts, in input order
    from_cache: int


def _timestamp_field(i: int) -> str:
    return f"records[{i}].timestamp"


def _counter_field(i: int) -> str:
    return f"records[{i}].counter_id"


def _looked_up(
    champion: LoadedChampion, counter_ids: Sequence[str], timestamps: Sequence[str]
) -> tuple[Answer, NDArray[np.intp], NDArray[np.int64], NDArray[np.bool_]]:
    """Parse and validate (422s name the record), then read what the cache has."""
    parsed = parse_timestamps(timestamps, _timestamp_field)
    codes = champion.codes_for(counter_ids, _counter_field)
    values, hit = champion.cache.lookup(codes, parsed.hours)
    return Answer(parsed.instants, values, int(np.count_nonzero(hit))), codes, parsed.hours, hit


def _predict_records_blocking(
    champion: LoadedChampion, counter_ids: Sequence[str], timestamps: Sequence[str]
) -> Answer:
    answer, codes, hours, hit = _looked_up(champion, counter_ids, timestamps)
    if answer.from_cache < len(hit):
        miss = ~hit
        answer.values[miss] = champion.predict_with_pipeline(codes[miss], hours[miss])
    return answer


async def predict_records(
    champion: LoadedChampion,
    counter_ids: Sequence[str],
    timestamps: Sequence[str],
    metrics: ServingMetrics,
) -> Answer:
    if len(timestamps) > OFFLOAD_RECORDS:
        answer = await anyio.to_thread.run_sync(
            _predict_records_blocking, champion, counter_ids, timestamps
        )
    else:
        answer, codes, hours, hit = _looked_up(champion, counter_ids, timestamps)
        if answer.from_cache < len(hit):
            miss = ~hit
            answer.values[miss] = await anyio.to_thread.run_sync(
                champion.predict_with_pipeline, codes[miss], hours[miss]
            )
    metrics.predicted(answer.from_cache, len(timestamps) - answer.from_cache)
    return answer


async def predict_hours(
    champion: LoadedChampion,
    codes: NDArray[np.intp],
    hours: NDArray[np.int64],
    metrics: ServingMetrics,
) -> NDArray[np.float64]:
    """Counts of already validated (counter code, hour) pairs, e.g. a /forecast series."""
    values, hit = champion.cache.lookup(codes, hours)
    misses = len(hit) - int(np.count_nonzero(hit))
    if misses:
        miss = ~hit
        values[miss] = await anyio.to_thread.run_sync(
            champion.predict_with_pipeline, codes[miss], hours[miss]
        )
    metrics.predicted(from_cache=len(hit) - misses, from_pipeline=misses)
    return values
