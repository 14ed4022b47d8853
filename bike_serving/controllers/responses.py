"""OpenAPI descriptions of the error answers (all share the `ErrorResponse` body)."""

from __future__ import annotations

from litestar.openapi import ResponseSpec

from bike_serving.schemas import ErrorResponse


def error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorResponse, description=description)


NO_CHAMPION = {503: error("No champion model is loaded yet (the detail says how to create one).")}
INVALID = {
    400: error("The body is not JSON."),
    422: error("A field is missing, has the wrong type or value; `field` names it."),
}
