"""GET /health/live (the process answers) and GET /health/ready (a champion is loaded)."""

from __future__ import annotations

from litestar import Controller, get

from bike_serving.controllers.responses import NO_CHAMPION
from bike_serving.dependencies import Services
from bike_serving.schemas import HealthResponse


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="Liveness")
    async def live(self) -> HealthResponse:
        return HealthResponse(status="alive")

    @get("/ready", summary="Readiness: a champion is loaded", responses=NO_CHAMPION)
    async def ready(self, services: Services) -> HealthResponse:
        champion = services.holder.require()  # 503 with the way to create a champion
        return HealthResponse(status="ready", version=champion.pointer.version)
