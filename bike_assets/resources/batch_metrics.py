"""Batch metrics pushed to a Prometheus Pushgateway; a missing or down gateway never fails a run.

Each call builds a fresh `CollectorRegistry` (nothing leaks between calls or into the process'
default registry) and sends it with `pushadd_to_gateway` (HTTP POST), which replaces only the
metric names being pushed inside the grouping key; `push_to_gateway` (PUT) would wipe every other
metric of the group, e.g. pushing the champion's health would delete the drift share.

Two kinds of metrics, two grouping keys, because the gateway is not an aggregator: it keeps the
LAST pushed value of each metric per grouping key and never adds pushes together.

Current-state gauges, grouping key `{job}` (each push replaces the previous value):
    bike_drift_share                    measured share of drifted columns (0..1)
    bike_drift_detected                 1 if that share reached the caller's threshold, else 0
    bike_model_r2_champion_current      champion R2 on recent data
    bike_model_rmse_champion_current    champion RMSE on recent data (bikes / hour)
Values that were not measured (None, NaN) are not pushed: the gateway keeps the last measured
one and Prometheus' `push_time_seconds` for the group says how old it is.

Event counters, grouping key `{job, run_id}` (one group per Dagster run):
    bike_training_runs_total{status}        1 per training run, by outcome
    bike_model_deployments_total{decision}  1 per promotion decision (DEPLOY, REJECT, ...)
    bike_records_ingested_total             rows ingested by the run
Pushing a running total under `{job}` would need a read-modify-write of the gateway (racy with
parallel backfill runs), and pushing "1" there would read 1 forever. Instead each run pushes its
own increment into its own group, where it never changes once the run is over, and the total is
a sum over groups: `sum by (status) (bike_training_runs_total{job="bike_traffic"})`. That sum only
grows as runs are added, so it behaves as a counter (deleting old groups on the gateway is a
counter reset, which `increase()`/`rate()` handle). Cost: one small group per run on the gateway
(run it with `--persistence.file`; prune groups older than the retention you want). A run pushes
one status per counter (a second push of the same counter in the same run replaces the first).
Without a `run_id` a random one is used, so every call still counts once.

No `pushgateway_url`: every method is a no-op returning False. Otherwise methods return True
when the gateway accepted the push; an unreachable gateway or an HTTP error is logged (without
credentials from the URL) and returns False.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import dagster as dg
from prometheus_client import CollectorRegistry, pushadd_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DRIFT_SHARE = "bike_drift_share"
DRIFT_DETECTED = "bike_drift_detected"
R2_CURRENT = "bike_model_r2_champion_current"
RMSE_CURRENT = "bike_model_rmse_champion_current"
TRAINING_RUNS = "bike_training_runs_total"
DEPLOYMENTS = "bike_model_deployments_total"
RECORDS_INGESTED = "bike_records_ingested_total"


class _Families(Collector):
    """A collector that yields prepared metric families once (no `_created` samples)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return list(self._families)


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _counter(
    name: str, doc: str, value: float, labels: Mapping[str, str] | None = None
) -> CounterMetricFamily:
    labels = dict(labels or {})
    family = CounterMetricFamily(name, doc, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _safe_location(url: str) -> str:
    """host:port only: a gateway URL may carry basic-auth credentials."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "?"


class BatchMetricsResource(dg.ConfigurableResource):
    """Pushes the platform's batch metrics; see the module docstring for the semantics."""

    pushgateway_url: str = ""
    job: str = "bike_traffic"
    timeout_s: float = 5.0

    # -- current-state gauges, grouping key {job} ------------------------------------------------
    def push_drift(self, share: float | None, detected: bool) -> bool:
        value = _finite(share)
        if value is None:
            return False  # a drift that was not measured is not a 0
        return self._push(
            [
                _gauge(DRIFT_SHARE, "Measured share of drifted monitored columns.", value),
                _gauge(
                    DRIFT_DETECTED, "1 if the drift share reached the threshold.", float(detected)
                ),
            ]
        )

    def push_health(self, r2: float | None, rmse: float | None) -> bool:
        families: list[Metric] = []
        r2_value, rmse_value = _finite(r2), _finite(rmse)
        if r2_value is not None:
            families.append(_gauge(R2_CURRENT, "Champion R2 on recent data.", r2_value))
        if rmse_value is not None:
            families.append(_gauge(RMSE_CURRENT, "Champion RMSE on recent data.", rmse_value))
        return self._push(families) if families else False

    # -- event counters, grouping key {job, run_id} ---------------------------------------------
    def push_training(self, status: str, *, run_id: str | None = None) -> bool:
        family = _counter(TRAINING_RUNS, "Training runs, by outcome.", 1.0, {"status": status})
        return self._push([family], run_id=self._run_id(run_id))

    def push_deployment(self, decision: str, *, run_id: str | None = None) -> bool:
        family = _counter(DEPLOYMENTS, "Promotion decisions.", 1.0, {"decision": decision})
        return self._push([family], run_id=self._run_id(run_id))

    def push_ingested(self, rows: int, *, run_id: str | None = None) -> bool:
        if rows < 0:
            dg.get_dagster_logger(__name__).warning("ingested rows %s < 0 not pushed", rows)
            return False
        family = _counter(RECORDS_INGESTED, "Rows ingested into the warehouse.", float(rows))
        return self._push([family], run_id=self._run_id(run_id))

    # -- plumbing -------------------------------------------------------------------------------
    @staticmethod
    def _run_id(run_id: str | None) -> str:
        return run_id if run_id else f"adhoc-{uuid.uuid4().hex}"

    def _push(self, families: list[Metric], *, run_id: str | None = None) -> bool:
        log = dg.get_dagster_logger(__name__)
        names = ", ".join(f.name for f in families)
        if not self.pushgateway_url.strip():
            log.debug("Pushgateway not configured, %s not pushed", names)
            return False
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        grouping_key = {"run_id": run_id} if run_id else None
        try:
            pushadd_to_gateway(
                self.pushgateway_url,
                job=self.job,
                registry=registry,
                grouping_key=grouping_key,
                timeout=self.timeout_s,
            )
        except Exception as exc:  # URLError, HTTPError (>= 400), timeout: logged, never raised
            log.warning(
                "metrics %s not pushed to %s: %s: %s",
                names,
                _safe_location(self.pushgateway_url),
                type(exc).__name__,
                exc,
            )
            return False
        return True
