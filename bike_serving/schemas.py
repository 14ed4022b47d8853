"""Request and response bodies as msgspec Structs (decoded and encoded in C, shown in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

# The documented form (OpenAPI `pattern` of every timestamp field): date, time to the hour,
# minute, second or microsecond, then `Z`, an offset, or nothing (Europe/Paris). The parser is
# `datetime.fromisoformat`, which also reads other ISO 8601 forms (week dates, basic format).
TIMESTAMP_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:\d{2})?)?$"
)

# Kept as a string (not `datetime`) so that any ISO 8601 form `datetime.fromisoformat` reads is
# accepted, a JSON number is refused instead of being read as epoch seconds, and a bad value is
# reported as `records[i].timestamp` by our own parser (see `bike_serving.timestamps`).
# The schema documents the form (`pattern`); the check stays in the parser, which names the
# record in its 422 and also reads the other ISO 8601 forms `fromisoformat` knows.
Timestamp = Annotated[
    str,
    msgspec.Meta(
        description="ISO 8601 date-time, YYYY-MM-DDTHH[:MM[:SS[.ffffff]]] followed by `Z`, an "
        "offset `+HH:MM`, or nothing for Europe/Paris wall-clock time; from 1970-01-01T00:00Z "
        "to before 2100-01-01T00:00Z. Any instant inside an hour is answered with the count of "
        "that hour.",
        examples=["2024-06-03T08:00:00+02:00", "2024-06-03T08:00:00"],
        # Litestar reads the OpenAPI-only keys of a msgspec field from `extra_json_schema["extra"]`
        extra_json_schema={"extra": {"pattern": TIMESTAMP_PATTERN}},
    ),
]


class Record(msgspec.Struct, forbid_unknown_fields=True):
    counter_id: str
    timestamp: Timestamp


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    # min_length=1: an empty batch is a client mistake, not an empty answer.
    # The upper bound (BIKE_MAX_RECORDS) is a runtime setting, checked by the handler (413).
    records: Annotated[list[Record], msgspec.Meta(min_length=1)]


class ModelInfo(msgspec.Struct):
    version: str
    promoted_at: str


class Prediction(msgspec.Struct):
    counter_id: str
    timestamp: datetime
    predicted_count: float


class PredictResponse(msgspec.Struct):
    model: ModelInfo
    predictions: list[Prediction]


class ForecastPoint(msgspec.Struct):
    timestamp: datetime
    predicted_count: float


class ForecastResponse(msgspec.Struct):
    model: ModelInfo
    counter_id: str
    start: datetime
    hours: int
    predictions: list[ForecastPoint]


class CountersResponse(msgspec.Struct):
    model: ModelInfo
    counters: list[str]


class CacheInfo(msgspec.Struct):
    start: datetime
    end: datetime
    hours: int
    counters: int


class ChampionResponse(msgspec.Struct):
    version: str
    kind: str  # "model", or "naive" when the seasonal naive beat every trained candidate
    # relative to the model store, with the sha256 checked at load: never a server path
    model_uri: Annotated[str, msgspec.Meta(examples=["models/v12/model.skops#sha256=" + "0" * 64])]
    trained_range: dict[str, str]
    metrics: dict[str, Any]
    promoted_at: str
    previous: dict[str, Any] | None
    loaded_at: datetime
    forecast_cache: CacheInfo
    # the last Paris day the served recent level has seen (daily update; "" if never updated)
    level_as_of: str = ""
    # the MLflow version `models:/bike-counts@champion` names: `version` or its level update
    registry_version: str = ""


class HealthResponse(msgspec.Struct, omit_defaults=True):
    status: str
    version: str | None = None


class ReloadResponse(msgspec.Struct):
    result: str
    detail: str
    model: ModelInfo | None


class ErrorResponse(msgspec.Struct, omit_defaults=True):
    """Every error body: `field` names the offending input when there is one."""

    status_code: int
    detail: str
    field: str | None = None


class RunStarted(msgspec.Struct):
    """A Dagster run accepted by the webserver (202)."""

    run_id: str
    job: str
    status_url: str  # GET it (with the X-API-Key) to follow the run
    dagster_url: str  # the run in the Dagster UI


class RunStatus(msgspec.Struct):
    run_id: str
    status: str  # Dagster's run status: QUEUED, STARTING, STARTED, SUCCESS, FAILURE, ...
    dagster_url: str
