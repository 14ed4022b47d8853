"""Prometheus metrics, all in one `CollectorRegistry` per app.

Litestar's `PrometheusMiddleware` (2.x) registers its HTTP metrics in prometheus_client's global
`REGISTRY` and caches them in a class attribute shared by every app, and `PrometheusConfig` has
no registry option. Two apps in one process (the test suite builds many) would then share and mix
their HTTP counters. The subclasses below keep the plugin's behaviour (same metric names, labels,
`group_path`) but create the metrics in the app's own registry; `/metrics` exposes that registry.

The middleware also has a faster path for the configuration used here (no custom labels, no
exemplars): the plugin calls `.labels()` five times per request (a lock and label validation
each) and builds a `Request` and its URL, about 45 us of the ~150 us a cached /predict costs in
Python. The fast path caches the label children and reads method and path template from the ASGI
scope; metric names, labels and values are the plugin's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import Message, Receive, Scope, Send
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.metrics import MetricWrapperBase

from bike_serving.champion import LoadedChampion

M = TypeVar("M", bound=MetricWrapperBase)


class RegistryPrometheusMiddleware(PrometheusMiddleware):
    """The plugin's middleware with its metrics created in `config.registry`.

    Litestar builds one middleware instance per route, hence the cache on the (per-app) config
    rather than on the instance: every route must share one Counter per name.
    """

    def _metric(
        self, kind: type[M], suffix: str, documentation: str, labels: dict[str, Any], **kw: Any
    ) -> M:
        config = cast("RegistryPrometheusConfig", self._config)
        name = f"{config.prefix}_{suffix}"
        metric = config.collectors.get(name)
        if metric is None:
            metric = kind(name, documentation, labelnames=[*labels], registry=config.registry, **kw)
            config.collectors[name] = metric
        return cast(M, metric)

    def request_count(self, labels: dict[str, str | int | float]) -> Counter:
        return self._metric(Counter, "requests_total", "Total requests", labels)

    def request_time(self, labels: dict[str, str | int | float]) -> Histogram:
        return self._metric(
            Histogram,
            "request_duration_seconds",
            "Request duration, in seconds",
            labels,
            **self._kwargs,
        )

    def requests_in_progress(self, labels: dict[str, str | int | float]) -> Gauge:
        return self._metric(
            Gauge,
            "requests_in_progress",
            "Total requests currently in progress",
            labels,
            multiprocess_mode="livesum",
        )

    def requests_error_count(self, labels: dict[str, str | int | float]) -> Counter:
        return self._metric(Counter, "requests_error_total", "Total errors in requests", labels)

    def _child(self, metric: M, values: tuple[Hashable, ...]) -> Any:
        children = cast("RegistryPrometheusConfig", self._config).children
        key = (id(metric), values)
        child = children.get(key)
        if child is None:
            child = children[key] = metric.labels(*values)
        return child

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        config = self._config
        if config.labels or config.exemplars or config.excluded_http_methods:
            await super().__call__(scope, receive, send)  # the plugin's general path
            return
        method = scope["method"] if scope["type"] == "http" else scope["type"]  # type: ignore[typeddict-item]
        path = scope["path_template"] if config.group_path else scope["path"]
        # The plugin's default labels, in its order (the in-progress gauge always says 200).
        labels: dict[str, Any] = {
            "method": method, "path": path, "status_code": 200, "app_name": config.app_name,
        }  # fmt: skip
        in_progress = self._child(
            self.requests_in_progress(labels), (method, path, 200, config.app_name)
        )
        span = {"start": time.perf_counter(), "duration": 0.0, "status": 200}

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                span["status"] = message["status"]
            elif message["type"] == "http.response.body":
                span["duration"] = time.perf_counter() - span["start"]
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            in_progress.dec()
            values = (method, path, int(span["status"]), config.app_name)
            if span["status"] >= 500:
                self._child(self.requests_error_count(labels), values).inc()
            self._child(self.request_count(labels), values).inc()
            self._child(self.request_time(labels), values).observe(span["duration"])


@dataclass
class RegistryPrometheusConfig(PrometheusConfig):
    """`PrometheusConfig` + the registry the HTTP metrics go to."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    collectors: dict[str, MetricWrapperBase] = field(default_factory=dict)
    children: dict[tuple[int, tuple[Hashable, ...]], Any] = field(default_factory=dict)
    middleware_class: type[PrometheusMiddleware] = field(default=RegistryPrometheusMiddleware)


class ServingMetrics:
    """The model metrics of one app, next to the HTTP metrics in the same registry."""

    def __init__(self) -> None:
        self.http = RegistryPrometheusConfig(app_name="bike_serving", group_path=True)
        self.registry = self.http.registry
        # The default process/GC/platform collectors can be registered in several registries.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.predictions = Counter(
            "bike_predictions",
            "Predicted counts returned, by where they came from: `cache` the forecast window, "
            "`day_cache` whole days computed on first use, `pipeline` a row-by-row call.",
            labelnames=["source"],
            registry=self.registry,
        )
        self.model_info = Gauge(
            "bike_model_info",
            "1 for the champion version being served.",
            labelnames=["version"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "bike_model_reloads",
            "Champion loads by result (success: a new champion is served; failed: the pointer "
            "was missing or corrupt, or the artifact could not be loaded, and the previous "
            "model was kept).",
            labelnames=["result"],
            registry=self.registry,
        )
        self.model_age = Gauge(
            "bike_model_age_seconds",
            "Seconds since the served champion was promoted (since it was loaded when the "
            "pointer has no usable promoted_at); NaN when no champion is loaded.",
            registry=self.registry,
        )
        self._champion: Callable[[], LoadedChampion | None] = lambda: None
        self.model_age.set_function(self._age_seconds)
        # Export zeros from the start so that rate() and alerts work before the first event.
        # (the children are kept: `labels()` takes a lock and costs microseconds per request)
        self._from_cache = self.predictions.labels(source="cache")
        self._from_days = self.predictions.labels(source="day_cache")
        self._from_pipeline = self.predictions.labels(source="pipeline")
        for result in ("success", "failed"):
            self.reloads.labels(result=result)

    def watch(self, champion: Callable[[], LoadedChampion | None]) -> None:
        """Where `bike_model_age_seconds` reads the served champion from, at scrape time."""
        self._champion = champion

    def _age_seconds(self) -> float:
        champion = self._champion()
        if champion is None:
            return math.nan
        try:
            promoted = datetime.fromisoformat(champion.pointer.promoted_at)
        except ValueError:
            promoted = champion.loaded_at
        if promoted.tzinfo is None:  # the platform writes UTC; a naive value is taken as UTC
            promoted = promoted.replace(tzinfo=UTC)
        since = promoted.timestamp()
        return max(time.time() - since, 0.0)

    def serving(self, version: str | None) -> None:
        self.model_info.clear()
        if version is not None:
            self.model_info.labels(version=version).set(1)

    def predicted(self, from_cache: int, from_days: int, from_pipeline: int) -> None:
        if from_cache:
            self._from_cache.inc(from_cache)
        if from_days:
            self._from_days.inc(from_days)
        if from_pipeline:
            self._from_pipeline.inc(from_pipeline)
