"""What handlers receive through `Provide`: `services` (the app-wide objects) and `champion`.

Built per app by `create_app`, as closures over that app's objects. Two things keep them cheap
on the hot path: a provider without parameters is called without Litestar validating a signature
model, and the two form a chain (`champion` needs `services`), because Litestar resolves a level
of the dependency graph holding several dependencies in an anyio task group, which costs more
than a whole cached prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.di import Provide

from bike_assets.settings import Settings
from bike_serving.champion import LoadedChampion
from bike_serving.metrics import ServingMetrics
from bike_serving.model_holder import ChampionHolder


@dataclass(frozen=True)
class Services:
    """The app-wide objects built once by `create_app`."""

    settings: Settings
    holder: ChampionHolder
    metrics: ServingMetrics


def provide_champion(services: Services) -> LoadedChampion:
    """The champion for this request, taken once: a reload during the request does not affect it.
    Raises the 503 "no champion" error when none is loaded."""
    return services.holder.require()


def build_dependencies(services: Services) -> dict[str, Provide]:
    def provide_services() -> Services:
        return services

    # sync_to_thread=False: attribute reads; a thread hop would cost more than they do.
    return {
        "services": Provide(provide_services, sync_to_thread=False),
        "champion": Provide(provide_champion, sync_to_thread=False),
    }
