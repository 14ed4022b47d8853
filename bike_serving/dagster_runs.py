"""Starting and following Dagster runs through the webserver's GraphQL API (`dagster-graphql`).

The serving app never runs jobs itself: it asks the Dagster webserver at `DAGSTER_GRAPHQL_URL`
(e.g. http://dagster-webserver:3000/graphql) to launch them, exactly as the UI's "Launch run"
does, so runs get the instance's queue, concurrency limits, run monitoring and history.

Errors are sorted into what the caller can act on: `DagsterUnavailableError` (not configured,
not reachable, server error: 503, try later) and `DagsterRejectedError` (the webserver answered
and refused: unknown job or run, invalid run config: 4xx with its message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from bike_serving.errors import ServingError

if TYPE_CHECKING:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

TIMEOUT_S = 30  # an admin request must not hang on a dead webserver (a busy one may be slow)
REQUESTED_BY_TAG = "bike/requested_by"


class DagsterUnavailableError(ServingError):
    status_code = 503


class DagsterRejectedError(ServingError):
    """The webserver refused (`status` 404 for an unknown job or run, else 422)."""

    def __init__(self, detail: str, status: int = 422, field: str | None = None) -> None:
        super().__init__(detail, field)
        self.status_code = status


@dataclass(frozen=True)
class DagsterRuns:
    graphql_url: str  # "" when not configured

    @property
    def ui_url(self) -> str:
        """Where a person sees the runs (the webserver serves the UI next to /graphql)."""
        return self.graphql_url.removesuffix("/").removesuffix("/graphql")

    def run_link(self, run_id: str) -> str:
        return f"{self.ui_url}/runs/{run_id}"

    def _client(self) -> DagsterGraphQLClient:
        # Imported here: dagster_graphql loads all of Dagster (seconds, ~100 MB), which the
        # server should pay only once someone uses a control.
        from dagster_graphql import DagsterGraphQLClient
        from gql.transport.requests import RequestsHTTPTransport

        if not self.graphql_url:
            raise DagsterUnavailableError(
                "Dagster controls are not configured: set DAGSTER_GRAPHQL_URL on the server "
                "(e.g. http://dagster-webserver:3000/graphql)"
            )
        host = urlsplit(self.graphql_url).hostname or self.graphql_url
        # A new client per call: the gql transport keeps one session and is not thread-safe.
        transport = RequestsHTTPTransport(url=self.graphql_url, use_json=True, timeout=TIMEOUT_S)
        return DagsterGraphQLClient(host, transport=transport)

    def submit(
        self,
        job: str,
        run_config: Mapping[str, Any] | None = None,
        asset_selection: Sequence[str] | None = None,
        requested_by: str = "bike_serving",
    ) -> str:
        """Launch `job` (blocking: call it in a worker thread); the new run's id."""
        from dagster_graphql import DagsterGraphQLClientError

        client = self._client()
        try:
            return client.submit_job_execution(
                job,
                run_config=dict(run_config or {}),
                tags={REQUESTED_BY_TAG: requested_by},
                asset_selection=list(asset_selection) if asset_selection else None,
            )
        except DagsterGraphQLClientError as exc:
            raise _sorted(exc, f"cannot start {job}") from exc

    def status(self, run_id: str) -> str:
        """The run's status name (QUEUED, STARTED, SUCCESS, FAILURE, ...)."""
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return str(self._client().get_run_status(run_id).value)
        except DagsterGraphQLClientError as exc:
            raise _sorted(exc, f"cannot read run {run_id}") from exc


def _unreachable(exc: BaseException) -> BaseException | None:
    """The transport failure behind `exc` (refused, timed out, 5xx), if that is what it was:
    the client wraps it once or twice, depending on where it happened."""
    from gql.transport.exceptions import TransportConnectionFailed, TransportServerError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(
            seen, requests.RequestException | TransportConnectionFailed | TransportServerError
        ):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _sorted(exc: DagsterGraphQLClientError, doing: str) -> ServingError:
    failure = _unreachable(exc)
    if failure is not None:
        return DagsterUnavailableError(
            f"{doing}: the Dagster webserver cannot be reached ({type(failure).__name__}); "
            "try again later"
        )
    kind = str(exc.args[0]) if exc.args else type(exc).__name__
    message = str(exc.args[1]) if len(exc.args) > 1 else ""
    if kind.endswith("NotFoundError"):
        return DagsterRejectedError(f"{doing}: {message or kind}", 404)
    if "Exception occured" in kind:  # the gql client's wrapper of an unexpected failure
        return DagsterUnavailableError(f"{doing}: the Dagster webserver failed to answer")
    return DagsterRejectedError(f"{doing}: {kind}: {message}".rstrip(": "))
