"""GET /forecast: the hourly series of one counter."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from litestar import Controller, get
from litestar.params import Parameter

from bike_serving.champion import LoadedChampion
from bike_serving.controllers.responses import INVALID, NO_CHAMPION
from bike_serving.dependencies import Services
from bike_serving.prediction import predict_hours
from bike_serving.schemas import TIMESTAMP_PATTERN, ForecastPoint, ForecastResponse
from bike_serving.timestamps import check_series, hour_instants, next_full_hour, parse_timestamp

MAX_HOURS = 744  # 31 days


class ForecastController(Controller):
    path = "/forecast"
    tags = ["predictions"]

    @get(summary="Hourly forecast of one counter", responses={**INVALID, **NO_CHAMPION})
    async def forecast(
        self,
        champion: LoadedChampion,
        services: Services,
        counter_id: Annotated[str, Parameter(description="A counter from GET /counters.")],
        start: Annotated[
            str | None,
            Parameter(
                description="ISO 8601 date-time like the timestamps of POST /predict (Europe/Paris "
                "when without offset; URL-encode `+` as %2B). The series starts at the hour "
                "containing it and must end before 2100-01-01T00:00Z. Default: the next full hour.",
                schema_extra={"pattern": TIMESTAMP_PATTERN},
            ),
        ] = None,
        hours: Annotated[
            int, Parameter(ge=1, le=MAX_HOURS, description="Length of the series in hours.")
        ] = 168,
    ) -> ForecastResponse:
        first = (
            int(parse_timestamp(start, "start").hours[0])
            if start is not None
            else next_full_hour(services.holder.clock())
        )
        check_series(first, hours, "start" if start is not None else "hours")
        codes = champion.codes_for([counter_id], lambda _: "counter_id")
        series = np.arange(first, first + hours, dtype=np.int64)
        values = await predict_hours(champion, np.repeat(codes, hours), series, services.metrics)
        instants = hour_instants(series)
        return ForecastResponse(
            model=champion.info,
            counter_id=counter_id,
            start=instants[0],
            hours=hours,
            predictions=list(map(ForecastPoint, instants, values.tolist())),
        )
