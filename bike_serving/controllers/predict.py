"""POST /predict: counts for arbitrary (counter_id, timestamp) records, in input order."""

from __future__ import annotations

from litestar import Controller, post

from bike_serving.champion import LoadedChampion
from bike_serving.controllers.responses import INVALID, NO_CHAMPION, error
from bike_serving.dependencies import Services
from bike_serving.errors import TooManyRecordsError
from bike_serving.prediction import predict_records
from bike_serving.schemas import Prediction, PredictRequest, PredictResponse


class PredictController(Controller):
    path = "/predict"
    tags = ["predictions"]

    @post(
        status_code=200,
        summary="Predicted hourly counts for (counter_id, timestamp) records",
        responses={
            **INVALID,
            413: error("More records than BIKE_MAX_RECORDS."),
            **NO_CHAMPION,
        },
    )
    async def predict(
        self,
        data: PredictRequest,
        champion: LoadedChampion,
        services: Services,
    ) -> PredictResponse:
        """A timestamp without offset is Europe/Paris time; a timestamp inside an hour gets the
        count of that hour. The answer echoes each timestamp with its offset."""
        records = data.records
        max_records = services.settings.max_records
        if len(records) > max_records:
            raise TooManyRecordsError(
                f"{len(records)} records in one request; the limit is {max_records} "
                "(BIKE_MAX_RECORDS): split the batch",
                "records",
            )
        counter_ids = [r.counter_id for r in records]
        answer = await predict_records(
            champion, counter_ids, [r.timestamp for r in records], services.metrics
        )
        # map() over C-level constructors: no per-row Python frame for 50k records.
        predictions = list(map(Prediction, counter_ids, answer.instants, answer.values.tolist()))
        return PredictResponse(model=champion.info, predictions=predictions)
