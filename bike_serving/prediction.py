"""Counts for (counter code, hour) pairs: from the forecast cache, else from the pipeline."""

from __future__ import annotations

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from bike_serving.champion import LoadedChampion
from bike_serving.metrics import ServingMetrics


async def predict_hours(
    champion: LoadedChampion,
    codes: NDArray[np.intp],
    hours: NDArray[np.int64],
    metrics: ServingMetrics,
) -> NDArray[np.float64]:
    """Counts in input order. Rows inside the cache window cost an array gather; the others go
    through `pipeline.predict` in a worker thread (milliseconds at least, and it must not stall
    the event loop that serves the cached requests)."""
    values, hit = champion.cache.lookup(codes, hours)
    misses = len(hit) - int(np.count_nonzero(hit))
    if misses:
        miss = ~hit
        values[miss] = await anyio.to_thread.run_sync(
            champion.predict_with_pipeline, codes[miss], hours[miss]
        )
    metrics.predicted(from_cache=len(hit) - misses, from_pipeline=misses)
    return values
