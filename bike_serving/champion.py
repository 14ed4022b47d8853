"""The loaded champion: pointer, pipeline, counter codes and forecast cache in one immutable object.

Requests take a reference to a `LoadedChampion` once and use only that object, so a hot reload
(one attribute assignment in `ChampionHolder`) never mixes two models inside one answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.pipeline import Pipeline

from bike_assets.ml.model import known_counters, load_pipeline
from bike_assets.ml.model_files import ArtifactError, load_artifact, parse_uri
from bike_assets.ml.pointer import ChampionPointer
from bike_serving.day_cache import DayCache
from bike_serving.errors import UnknownCountersError
from bike_serving.forecast_cache import ForecastCache, build_forecast_cache, predict_rows
from bike_serving.schemas import ModelInfo
from bike_serving.timestamps import paris_day

_SMALL_BATCH = 8


@dataclass(frozen=True, eq=False)
class LoadedChampion:
    pointer: ChampionPointer
    pipeline: Pipeline
    counters: tuple[str, ...]  # the order of the cache rows
    counter_codes: Mapping[str, int]  # counter_id -> row of the cache
    counter_index: pd.Index  # the same mapping, for vectorised lookups of big batches
    cache: ForecastCache
    days: DayCache  # any other hour: whole days computed on first use (kept across refreshes)
    loaded_at: datetime
    info: ModelInfo  # what every answer says about the model that produced it
    artifact: str  # the model file relative to the store, with its digest (never a server path)
    previous: dict[str, Any] | None  # the pointer's `previous`, its model named the same way

    @property
    def key(self) -> tuple[str, str]:
        """What identifies the artifact: a pointer change elsewhere (metrics) needs no reload."""
        return (self.pointer.version, self.pointer.model_uri)

    def codes_for(
        self, counter_ids: Sequence[str], field: Callable[[int], str]
    ) -> NDArray[np.intp]:
        """Cache rows of `counter_ids`; unknown ones raise a 422 that names them."""
        if len(counter_ids) > _SMALL_BATCH:
            # hash lookups in C; -1 marks an unknown counter, like the dict path below
            codes = self.counter_index.get_indexer(pd.Index(list(counter_ids)))
        else:  # a dict lookup beats building an Index for a few rows
            get = self.counter_codes.get
            codes = np.fromiter((get(c, -1) for c in counter_ids), np.intp, len(counter_ids))
        if (codes < 0).any():
            missing = np.flatnonzero(codes < 0)
            raise UnknownCountersError(
                (counter_ids[i] for i in missing.tolist()), field(int(missing[0]))
            )
        return codes

    def with_cache_for(self, now: datetime, days: int) -> LoadedChampion:
        """The same model with its forecast window moved to start on `now`'s Paris day."""
        cache = build_forecast_cache(self.pipeline, self.counters, paris_day(now), days)
        return dataclasses.replace(self, cache=cache)

    def with_pointer(self, pointer: ChampionPointer, root: str) -> LoadedChampion:
        return dataclasses.replace(
            self, pointer=pointer, info=_info(pointer), previous=_public_previous(pointer, root)
        )


def _info(pointer: ChampionPointer) -> ModelInfo:
    return ModelInfo(version=pointer.version, promoted_at=pointer.promoted_at)


def _public_previous(pointer: ChampionPointer, root: str) -> dict[str, Any] | None:
    """`previous` as shown over HTTP: its model URI relative to the store, or left out when it
    is not inside the store (an old absolute path would tell callers the server's layout)."""
    if not isinstance(pointer.previous, dict):
        return None
    shown = {k: v for k, v in pointer.previous.items() if k != "model_uri"}
    with contextlib.suppress(ArtifactError):
        shown["model_uri"] = parse_uri(str(pointer.previous.get("model_uri", "")), root).uri
    return shown


def load_champion(
    pointer: ChampionPointer, root: str, cache_days: int, now: datetime | None = None
) -> LoadedChampion:
    """Load the artifact from the model store at `root`, digest checked, and precompute its
    forecasts (blocking, seconds: run in a thread)."""
    now = now or datetime.now(UTC)
    pipeline = load_artifact(root, pointer.model_uri, load_pipeline)
    counters = tuple(known_counters(pipeline))
    cache = build_forecast_cache(pipeline, counters, paris_day(now), cache_days)
    predict = functools.partial(predict_rows, pipeline, np.asarray(counters, dtype=object))
    return LoadedChampion(
        pointer=pointer,
        pipeline=pipeline,
        counters=counters,
        counter_codes=MappingProxyType({c: i for i, c in enumerate(counters)}),
        counter_index=pd.Index(counters, dtype=object),
        cache=cache,
        days=DayCache(predict, len(counters)),
        loaded_at=now,
        info=_info(pointer),
        artifact=parse_uri(pointer.model_uri, root).uri,
        previous=_public_previous(pointer, root),
    )
