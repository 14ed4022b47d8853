"""A toy city of commuters, for the serving tests and the serving benchmark.

Two rush hours (8h and 18h local time), quieter weekends with an afternoon hump, a level per
counter and Poisson noise: enough structure for a small model to learn something, in a few
lines of numpy. It lives in the package because the tests (`serving_fixtures.py`) and the
benchmark (`bench/serve.py`) both train on it and benchmarks must not import test code; the
platform's own offline source is `synthetic.py`, which nothing here replaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray


def commuter_counts(
    counters: Sequence[str],
    local: pd.DatetimeIndex,
    level: NDArray[np.float64],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Tidy hourly counts (counter_id, UTC timestamp, float count) of every counter at every
    hour of `local` (tz-aware, local time), each counter's profile scaled by its `level`."""
    hour = local.hour.to_numpy()
    weekend = local.weekday.to_numpy() >= 5
    profile = (
        20
        + 180 * np.exp(-0.5 * ((hour - 8) / 1.2) ** 2)
        + 150 * np.exp(-0.5 * ((hour - 18) / 1.5) ** 2)
    )
    profile = np.where(weekend, 0.5 * profile + 30 * (hour >= 10) * (hour <= 19), profile)
    mean = np.outer(level, profile)  # [counter, hour]
    return pd.DataFrame(
        {
            "counter_id": np.repeat(np.asarray(counters, dtype=object), len(local)),
            "timestamp": np.tile(local.tz_convert("UTC"), len(counters)),
            "count": rng.poisson(mean).ravel().astype(np.float64),
        }
    )
