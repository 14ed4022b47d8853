"""The ASGI app: `uvicorn bike_serving.app:app` or `litestar --app bike_serving.app:app run`.

Configuration comes from the environment through `Settings.from_env()` (the same settings as the
Dagster code location): BIKE_DATA_DIR (where champion.json is), BIKE_ENV/GCS_BUCKET/GCS_PREFIX
(the pointer on GCS), BIKE_API_KEY (admin endpoints; disabled when empty), BIKE_MAX_RECORDS,
BIKE_RELOAD_INTERVAL (seconds between pointer checks) and BIKE_FORECAST_CACHE_DAYS (days
precomputed from the start of the current Paris day), all range-checked by `Settings.from_env`
(a bad value stops the start with the variable's name).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import cast

from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from bike_assets.settings import Settings
from bike_serving.auth import API_KEY_HEADER
from bike_serving.controllers import CONTROLLERS
from bike_serving.dependencies import Services, build_dependencies
from bike_serving.errors import EXCEPTION_HANDLERS
from bike_serving.metrics import ServingMetrics
from bike_serving.model_holder import ChampionHolder
from bike_serving.request import JsonRequest
from bike_serving.timing import server_timing_middleware

API_VERSION = "1.0.0"
# Room for BIKE_MAX_RECORDS records of generous size, so that an over-long batch is refused by
# count (413 naming the limit) rather than by Litestar's byte limit, and never decoded unbounded.
BYTES_PER_RECORD = 256
MIN_BODY_LIMIT = 10_000_000


@contextlib.asynccontextmanager
async def champion_lifespan(app: Litestar) -> AsyncIterator[None]:
    """Load the champion before the first request; re-check the pointer in the background."""
    holder = cast(Services, app.state.services).holder
    holder.reset_lock()
    await holder.reload()  # no champion yet is fine: ready stays false, /predict answers 503
    task: asyncio.Task[None] | None = None
    if holder.settings.reload_interval_s > 0:
        task = asyncio.create_task(holder.run_periodic(), name="champion-pointer-check")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None
) -> Litestar:
    """A new app with its own champion holder and metrics registry (several can coexist)."""
    settings = settings or Settings.from_env()
    metrics = ServingMetrics()
    holder = ChampionHolder(settings, metrics, clock or (lambda: datetime.now(UTC)))
    services = Services(settings, holder, metrics)
    return Litestar(
        route_handlers=CONTROLLERS,
        state=State({"services": services}),  # for the lifespan and the guard
        dependencies=build_dependencies(services),
        lifespan=[champion_lifespan],
        middleware=[server_timing_middleware, metrics.http.middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=JsonRequest,
        request_max_body_size=max(MIN_BODY_LIMIT, settings.max_records * BYTES_PER_RECORD),
        openapi_config=OpenAPIConfig(
            title="Paris bike counts forecast",
            version=API_VERSION,
            description="Hourly bike counts predicted by the champion model.",
            path="/schema",
            # The raw document at /schema and /schema/openapi.json, no HTML viewer: Litestar's
            # Swagger UI/Redoc pages load their scripts from a CDN and are blank offline. Any
            # OpenAPI viewer can open the document.
            render_plugins=[
                JsonRenderPlugin(path=["/", "/openapi.json"], media_type=MediaType.JSON)
            ],
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey", name=API_KEY_HEADER, security_scheme_in="header"
                    )
                }
            ),
        ),
    )


app = create_app()
