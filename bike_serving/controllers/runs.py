"""The original API's HTTP controls, as Dagster runs (guarded by X-API-Key, issue #8).

| original | here | Dagster run |
|---|---|---|
| POST /train | POST /admin/retrain `{"force"?}` | `retrain_job` (`force`: promote anyway) |
| POST /monitor | POST /admin/monitor `{"force"?}` | `weekly_monitor_job` (`force`: P0) |
| POST /promote_champion | POST /admin/promote `{"version"}` | `rollback_champion_job` to it |
| POST /evaluate | POST /admin/evaluate | `evaluate_champion_job` (latest week, test_baseline) |
| - | GET /admin/runs/{run_id} | its status and a link to it in the Dagster UI |

A start answers 202 with the run id and links as soon as the webserver accepted the run; the
run itself is followed with GET /admin/runs/{run_id} (or in the UI).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Controller, get, post
from litestar.params import Parameter

from bike_serving.auth import API_KEY_HEADER, require_api_key
from bike_serving.controllers.responses import error
from bike_serving.dagster_runs import DagsterRuns
from bike_serving.dependencies import Services
from bike_serving.schemas import RunStarted, RunStatus

RETRAIN_JOB = "retrain_job"
MONITOR_JOB = "weekly_monitor_job"
PROMOTE_JOB = "rollback_champion_job"
EVALUATE_JOB = "evaluate_champion_job"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$"


class ForceRequest(msgspec.Struct, forbid_unknown_fields=True):
    force: bool = False


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    # a model version as MLflow numbers them (an int is accepted too)
    version: (
        Annotated[int, msgspec.Meta(ge=1)] | Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)]
    )


CONTROL_ERRORS = {
    401: error(f"Missing or wrong {API_KEY_HEADER}."),
    403: error("Admin endpoints are disabled (BIKE_API_KEY is not set)."),
    404: error("The webserver knows no such job or run."),
    503: error("Dagster is not configured (DAGSTER_GRAPHQL_URL) or cannot be reached."),
}


async def _start(
    services: Services,
    job: str,
    run_config: dict[str, Any] | None = None,
    assets: tuple[str, ...] = (),
) -> RunStarted:
    runs = DagsterRuns(services.settings.dagster_graphql_url)
    run_id = await anyio.to_thread.run_sync(
        lambda: runs.submit(job, run_config, asset_selection=assets)
    )
    return RunStarted(
        run_id=run_id,
        job=job,
        status_url=f"/admin/runs/{run_id}",
        dagster_url=runs.run_link(run_id),
    )


class RunsController(Controller):
    path = "/admin"
    tags = ["admin"]
    guards = [require_api_key]
    security = [{"apiKey": []}]

    @post("/retrain", status_code=202, summary="Start retrain_job", responses=CONTROL_ERRORS)
    async def retrain(self, services: Services, data: ForceRequest | None = None) -> RunStarted:
        """Challenger, evaluation against the champion and the naive, promotion if better
        (`force`: promote it anyway)."""
        config = {"ops": {"champion": {"config": {"force": True}}}} if data and data.force else None
        return await _start(services, RETRAIN_JOB, config)

    @post("/monitor", status_code=202, summary="Start the monitoring job", responses=CONTROL_ERRORS)
    async def monitor(self, services: Services, data: ForceRequest | None = None) -> RunStarted:
        """champion_health and drift_report; `force` records a P0 so that retrain_sensor
        retrains whatever the measures say."""
        config = (
            {"ops": {"drift_report": {"config": {"force_retrain": True}}}}
            if data and data.force
            else None
        )
        return await _start(services, MONITOR_JOB, config)

    @post(
        "/promote",
        status_code=202,
        summary="Make a model version the champion (promotion or rollback)",
        responses=CONTROL_ERRORS,
    )
    async def promote(self, services: Services, data: PromoteRequest) -> RunStarted:
        config = {"ops": {"rollback_champion": {"config": {"version": str(data.version)}}}}
        return await _start(services, PROMOTE_JOB, config)

    @post(
        "/evaluate",
        status_code=202,
        summary="Score the champion on the latest complete week and on test_baseline",
        responses=CONTROL_ERRORS,
    )
    async def evaluate(self, services: Services) -> RunStarted:
        """Only hours outside the champion's training data, beside the seasonal naive."""
        return await _start(services, EVALUATE_JOB)

    @get("/runs/{run_id:str}", summary="Status of a run started here", responses=CONTROL_ERRORS)
    async def run(
        self,
        services: Services,
        run_id: Annotated[str, Parameter(pattern=r"^[0-9a-f-]{8,64}$")],
    ) -> RunStatus:
        runs = DagsterRuns(services.settings.dagster_graphql_url)
        status = await anyio.to_thread.run_sync(runs.status, run_id)
        return RunStatus(run_id=run_id, status=status, dagster_url=runs.run_link(run_id))
