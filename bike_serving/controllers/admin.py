"""POST /admin/reload: check the champion pointer now (guarded by X-API-Key)."""

from __future__ import annotations

from litestar import Controller, post

from bike_serving.auth import API_KEY_HEADER, require_api_key
from bike_serving.controllers.responses import error
from bike_serving.dependencies import Services
from bike_serving.schemas import ReloadResponse


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [require_api_key]
    security = [{"apiKey": []}]

    @post(
        "/reload",
        status_code=200,
        summary="Re-read the champion pointer and load a new champion if it changed",
        responses={
            401: error(f"Missing or wrong {API_KEY_HEADER}."),
            403: error("Admin endpoints are disabled (BIKE_API_KEY is not set)."),
        },
    )
    async def reload(self, services: Services) -> ReloadResponse:
        """200 whatever the outcome: `result` says what happened (`loaded`, `unchanged`,
        `refreshed`, `failed` with the old model kept, or `absent`)."""
        holder = services.holder
        outcome = await holder.reload()
        champion = holder.current
        return ReloadResponse(
            result=outcome.result,
            detail=outcome.detail,
            model=champion.info if champion else None,
        )
