"""The daily level update: a champion follows the city between retrains.

The fast-moving part of a champion is its recent level: the counter x hour-of-week level of the
last weeks (`ForecastFeatures`' tables, which the trees and the blend start from), or the whole
table of a seasonal-naive champion. `refresh_level` returns a copy of the served pipeline whose
level is that of the weeks ending with the latest counts; everything learned from the long
history (trees, blend, calendar choices, profile) is kept. Same definition as at fit: a forecast
after the data gets the last `level_weeks` weeks before it.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from bike_assets.ml.features import INPUT_COLUMNS, ForecastFeatures
from bike_assets.ml.naive import SeasonalNaive

LEVEL_WEEKS_NEEDED = 4


def refresh_level(pipeline: Pipeline, recent: pd.DataFrame) -> Pipeline:
    """`pipeline` with its recent level recomputed from `recent` (counter_id, timestamp,
    count; at least the last `level_weeks` weeks). The input pipeline is not modified."""
    first_name, first = pipeline.steps[0]
    updated = copy.copy(pipeline)
    if isinstance(first, ForecastFeatures):
        features = first.with_recent_counts(recent.loc[:, INPUT_COLUMNS], recent["count"])
        updated.steps = [(first_name, features), *pipeline.steps[1:]]
        return updated
    if isinstance(first, SeasonalNaive):
        known = set(first.counters_)
        rows = recent[recent["counter_id"].astype(str).isin(known)]
        naive = SeasonalNaive(weeks=first.weeks).fit(rows.loc[:, INPUT_COLUMNS], rows["count"])
        updated.steps = [(first_name, _with_counters(naive, first.counters_))]
        return updated
    raise TypeError(f"no level to refresh in a pipeline starting with {type(first).__name__}")


def _with_counters(naive: SeasonalNaive, counters: np.ndarray) -> SeasonalNaive:
    """`naive` answering for `counters` too (those silent lately get the overall median), so
    a level update never makes the server refuse a counter it served yesterday."""
    if np.array_equal(naive.counters_, counters):
        return naive
    widened = copy.deepcopy(naive)
    index = np.searchsorted(counters, naive.counters_)
    widened.counters_ = counters
    widened.table_ = np.full((len(counters), naive.table_.shape[1]), np.nan)
    widened.table_[index] = naive.table_
    widened.counter_median_ = np.full(len(counters), np.nan)
    widened.counter_median_[index] = naive.counter_median_
    return widened
