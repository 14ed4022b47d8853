"""The guard of the admin endpoints: an `X-API-Key` header equal to `BIKE_API_KEY`.

Without `BIKE_API_KEY` the admin endpoints are disabled: they answer 403 with a JSON message
saying so (403 rather than 404 so that an operator sees why, instead of hunting a wrong URL).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from bike_assets.settings import Settings
from bike_serving.errors import AdminDisabledError, UnauthorizedError

API_KEY_HEADER = "X-API-Key"


def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    settings: Settings = connection.app.state.services.settings
    if not settings.api_key:
        raise AdminDisabledError(
            "admin endpoints are disabled: set BIKE_API_KEY on the server to enable them"
        )
    given = connection.headers.get(API_KEY_HEADER)
    # Header values arrive latin-1 decoded: encoding them back gives the bytes the client sent.
    # compare_digest takes time independent of where the first difference is.
    if given is None or not hmac.compare_digest(
        given.encode("latin-1"), settings.api_key.encode("utf-8")
    ):
        raise UnauthorizedError(f"missing or wrong {API_KEY_HEADER} header", API_KEY_HEADER)
