"""GET /counters and GET /champion: what the served model knows and how it was evaluated."""

from __future__ import annotations

from litestar import Controller, get

from bike_serving.champion import LoadedChampion
from bike_serving.controllers.responses import NO_CHAMPION
from bike_serving.schemas import CacheInfo, ChampionResponse, CountersResponse


class ModelController(Controller):
    tags = ["model"]

    @get("/counters", summary="Counters the champion was trained on", responses=NO_CHAMPION)
    async def counters(self, champion: LoadedChampion) -> CountersResponse:
        return CountersResponse(model=champion.info, counters=list(champion.counters))

    @get(
        "/champion",
        summary="The champion pointer and its evaluation metrics",
        responses=NO_CHAMPION,
    )
    async def champion(self, champion: LoadedChampion) -> ChampionResponse:
        pointer, cache = champion.pointer, champion.cache
        return ChampionResponse(
            version=pointer.version,
            kind=pointer.kind,
            model_uri=champion.artifact,
            trained_range=pointer.trained_range,
            metrics=pointer.metrics,
            promoted_at=pointer.promoted_at,
            previous=champion.previous,
            loaded_at=champion.loaded_at,
            forecast_cache=CacheInfo(
                start=cache.start,
                end=cache.end,
                hours=cache.n_hours,
                counters=len(champion.counters),
            ),
            level_as_of=pointer.level_as_of,
            registry_version=pointer.registry_version or pointer.version,
        )
