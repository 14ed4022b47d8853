"""Errors of the API and the handlers that turn every exception into one JSON shape.

Every error body is `{"status_code": int, "detail": str, "field"?: str}`. Client mistakes are
4xx naming the problem; anything unexpected is a bare JSON 500 (logged with its traceback here,
never sent to the client).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from bike_serving.schemas import ErrorResponse

logger = logging.getLogger("bike_serving")

RETRAIN_COMMAND = "dagster job execute -m bike_assets.definitions -j retrain_job"
_SHOWN_VALUE_CHARS = 64  # echoed client values are cut: an error body must stay small


def shorten(value: str, limit: int = _SHOWN_VALUE_CHARS) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


class ServingError(Exception):
    """An error with its HTTP status, a message for the client and the offending field."""

    status_code: int = HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInputError(ServingError):
    """Well-formed JSON whose content the API cannot use (bad timestamp, value out of range)."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY


class UnknownCountersError(InvalidInputError):
    """Counters the champion was not trained on: refused, never mapped to another counter."""

    def __init__(self, counters: Iterable[str], field: str | None) -> None:
        self.counters = sorted(set(counters))
        shown = ", ".join(repr(shorten(c)) for c in self.counters[:10])
        more = f" and {len(self.counters) - 10} more" if len(self.counters) > 10 else ""
        super().__init__(
            f"unknown counter_id(s) for model: {shown}{more}; GET /counters lists the known ones",
            field,
        )


class MalformedBodyError(ServingError):
    """A body that is not decodable JSON (the status is the base class's 400)."""


class UnsupportedMediaTypeError(ServingError):
    status_code = HTTP_415_UNSUPPORTED_MEDIA_TYPE


class TooManyRecordsError(ServingError):
    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE


class NoChampionError(ServingError):
    status_code = HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self) -> None:
        # No location in the message: it goes to unauthenticated callers (the server logs it).
        super().__init__(
            "no champion model is loaded: no usable champion pointer was found. Create one "
            f"with `{RETRAIN_COMMAND}`; the server picks it up at its next pointer check "
            "(BIKE_RELOAD_INTERVAL) or on POST /admin/reload."
        )


class UnauthorizedError(ServingError):
    status_code = HTTP_401_UNAUTHORIZED


class AdminDisabledError(ServingError):
    status_code = HTTP_403_FORBIDDEN


def _error_response(
    status_code: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response[ErrorResponse]:
    return Response(
        ErrorResponse(status_code=status_code, detail=detail, field=field),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=headers,
    )


def serving_error_handler(_: Request[Any, Any, Any], exc: ServingError) -> Response[ErrorResponse]:
    return _error_response(exc.status_code, exc.detail, exc.field)


_MISSING_PARAMETER = re.compile(r"Missing required \w+ parameter '([^']+)'")


def _problem(error: dict[str, Any]) -> tuple[str, str]:
    """(field, message) of one Litestar validation error; the handler's `data` is the body."""
    key = str(error.get("key") or "")
    message = str(error.get("message") or "invalid value")
    if key == "data":
        key = "body"
        if message == "'data'":  # the KeyError text Litestar reports for an absent body
            message = 'a JSON object {"records": [...]} is required'
    return key, message


def _validation_response(exc: ValidationException) -> Response[ErrorResponse]:
    """Litestar's own validation (body schema, query parameters) as a 422 naming the field."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = [_problem(e) for e in extra if isinstance(e, dict)]
    if problems:
        detail = "; ".join(f"{key}: {message}" if key else message for key, message in problems)
        return _error_response(HTTP_422_UNPROCESSABLE_ENTITY, detail, problems[0][0] or None)
    missing = _MISSING_PARAMETER.search(exc.detail)
    if missing:
        name = missing.group(1)
        return _error_response(
            HTTP_422_UNPROCESSABLE_ENTITY, f"missing required parameter {name!r}", name
        )
    return _error_response(HTTP_422_UNPROCESSABLE_ENTITY, exc.detail)


def http_exception_handler(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[ErrorResponse]:
    if isinstance(exc, ValidationException):
        return _validation_response(exc)
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR:
        logger.error("%s %s failed: %r", request.method, request.url.path, exc, exc_info=exc)
        return _error_response(exc.status_code, "internal server error")
    detail = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        # Litestar wraps the msgspec decode error of a body that is not JSON at all.
        detail = f"malformed JSON body: {detail}"
    return _error_response(exc.status_code, detail, headers=exc.headers)


def internal_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ErrorResponse]:
    """Last resort: log the traceback for us, give the client nothing but a status."""
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ServingError: serving_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}
