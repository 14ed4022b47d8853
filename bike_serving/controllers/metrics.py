"""GET /metrics: the app's own Prometheus registry (HTTP + model metrics)."""

from __future__ import annotations

from litestar import Response, get
from litestar.plugins.prometheus import PrometheusController
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bike_serving.dependencies import Services


class MetricsController(PrometheusController):
    """The plugin's controller reads the global registry; this one reads the app's registry.
    (No multiprocess mode: the app is meant to run with one worker per container.)"""

    path = "/metrics"
    include_in_schema = False

    @get()
    async def get(self, services: Services) -> Response[bytes]:
        return Response(
            generate_latest(services.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
