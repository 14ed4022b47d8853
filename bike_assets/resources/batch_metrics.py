"""Batch metrics pushed to a Prometheus Pushgateway; a missing or down gateway never fails a run.

One group per pipeline step. Every metric lives in the group `{job="<job>_<step>"}` of its step
(`bike_traffic_ingestion`, `_training`, `_evaluation`, `_monitoring`), never in a group per run:
the gateway forgets no group, so a group per run piles up series forever (Prometheus' "common
pitfalls" of the Pushgateway). `METRICS` below is the catalogue (name, type, step, labels); the
dashboards and alert rules under deploy/ may only name what it lists (a test checks it).

Pushes use `pushadd_to_gateway` (HTTP POST), which replaces only the metric names being pushed
inside the group: pushing the champion's health leaves the drift share of the same group alone.

Gauges: the current state. Each push replaces the previous value: the champion's R2/RMSE/MAE on
the last 7 days, the drift share, per-column drift scores, drift detected, the last retrain
decision level, the scores of challenger/champion/naive at the last evaluation, the last
decision, rows ingested by the last run, and `bike_<step>_last_success_timestamp_seconds`
(Unix time) for ingestion, training, evaluation and monitoring. Values that were not measured
(None, NaN) are not pushed: the gateway keeps the last measured one, and `push_time_seconds`
of the group says how old it is.

Counters: outcome totals that only grow (`bike_training_runs_total{status}`,
`bike_model_deployments_total{decision}`, `bike_retrain_decisions_total{level}`,
`bike_records_ingested_total`). The gateway keeps the last pushed value and never adds pushes
together, so each increment is a read-modify-write: read the group's current totals back from
the gateway (`GET /metrics`), add, push every series of that counter (a POST replaces them all).
Chosen over recounting `promotion_log`/`decision_log` because it needs no warehouse in the
resource and covers events those tables do not hold (training runs, rows ingested). Known limits,
both seen by Prometheus as a counter reset that `rate()`/`increase()` handle:
  * two pushes of the same counter racing within the same few milliseconds can lose one
    increment (the platform's runs that push counters are hourly to weekly, not concurrent);
  * a gateway restarted without `--persistence.file` starts the totals again from 0.
When the read-back fails nothing is pushed (a total restarting from 1 would be a lie) and the
method returns False. Every known label value is pushed (at 0 until it happens) so that
`increase()` sees the first event of each outcome.

Decisions are counted once per run. The evaluation counts every decision it takes, including a
challenger REJECTed by the naive gate, which stops the run before `champion`
(`push_evaluation`). `push_deployment` (the champion step, a rollback) counts only what the
evaluation of the same run did not: a ROLLBACK, a forced promotion (counted as FORCE), or any
decision of a run whose evaluation pushed nothing; the run id of the last evaluation decision is
kept as a label of `bike_model_last_decision` for that. A pointer move (DEPLOY, ROLLBACK) sets
`bike_model_last_promotion_timestamp_seconds`.

No `pushgateway_url`: every method is a no-op returning False. Otherwise methods return True
when the gateway accepted the push; an unreachable gateway or an HTTP error is logged (without
credentials from the URL) and returns False. No method raises.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
import requests
from prometheus_client import CollectorRegistry, pushadd_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

Step = Literal["ingestion", "training", "evaluation", "monitoring"]
STEPS: tuple[Step, ...] = ("ingestion", "training", "evaluation", "monitoring")

TRAINING_STATUSES = ("success", "failed")
# What the evaluation decides, plus what only the champion step or a rollback does.
DECISIONS = ("DEPLOY", "SKIP", "REJECT", "ROLLBACK", "FORCE")
RETRAIN_LEVELS = ("P0", "P1", "P2", "P3", "P4")
EVALUATION_MODELS = ("challenger", "champion", "naive")


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: its name as Prometheus stores it (counters end in `_total`)."""

    name: str
    kind: Literal["gauge", "counter"]
    step: Step
    help: str
    labels: tuple[str, ...] = ()


def _spec(
    name: str, kind: Literal["gauge", "counter"], step: Step, help_: str, *labels: str
) -> MetricSpec:
    return MetricSpec(name, kind, step, help_, tuple(labels))


# The catalogue. Constants keep the names the callers and tests already import.
RECORDS_INGESTED = "bike_records_ingested_total"
RECORDS_LAST_RUN = "bike_records_ingested_last_run"
INGESTION_SUCCESS = "bike_ingestion_last_success_timestamp_seconds"
TRAINING_RUNS = "bike_training_runs_total"
TRAINING_SUCCESS = "bike_training_last_success_timestamp_seconds"
EVALUATION_R2 = "bike_model_evaluation_r2"
EVALUATION_RMSE = "bike_model_evaluation_rmse"
EVALUATION_MAE = "bike_model_evaluation_mae"
DEPLOYMENTS = "bike_model_deployments_total"
LAST_DECISION = "bike_model_last_decision"
LAST_PROMOTION = "bike_model_last_promotion_timestamp_seconds"
EVALUATION_SUCCESS = "bike_evaluation_last_success_timestamp_seconds"
R2_CURRENT = "bike_model_r2_champion_current"
RMSE_CURRENT = "bike_model_rmse_champion_current"
MAE_CURRENT = "bike_model_mae_champion_current"
DRIFT_SHARE = "bike_drift_share"
DRIFT_DETECTED = "bike_drift_detected"
DRIFT_COLUMN_SCORE = "bike_drift_column_score"
RETRAIN_LEVEL = "bike_retrain_decision_level"
RETRAIN_DECISIONS = "bike_retrain_decisions_total"
MONITORING_SUCCESS = "bike_monitoring_last_success_timestamp_seconds"

METRICS: tuple[MetricSpec, ...] = (
    _spec(RECORDS_INGESTED, "counter", "ingestion", "Rows ingested into the warehouse."),
    _spec(RECORDS_LAST_RUN, "gauge", "ingestion", "Rows ingested by the last ingestion run."),
    _spec(INGESTION_SUCCESS, "gauge", "ingestion", "Unix time of the last successful ingestion."),
    _spec(TRAINING_RUNS, "counter", "training", "Training runs, by outcome.", "status"),
    _spec(TRAINING_SUCCESS, "gauge", "training", "Unix time of the last successful training."),
    _spec(EVALUATION_R2, "gauge", "evaluation", "R2 at the last evaluation.", "split", "model"),
    _spec(EVALUATION_RMSE, "gauge", "evaluation", "RMSE at the last evaluation.", "split", "model"),
    _spec(EVALUATION_MAE, "gauge", "evaluation", "MAE at the last evaluation.", "split", "model"),
    _spec(DEPLOYMENTS, "counter", "evaluation", "Promotion decisions.", "decision"),
    _spec(
        LAST_DECISION,
        "gauge",
        "evaluation",
        "1, labelled with the last promotion decision, its reason kind and its run.",
        "decision",
        "reason",
        "run_id",
    ),
    _spec(LAST_PROMOTION, "gauge", "evaluation", "Unix time the champion pointer last moved."),
    _spec(EVALUATION_SUCCESS, "gauge", "evaluation", "Unix time of the last finished evaluation."),
    _spec(R2_CURRENT, "gauge", "monitoring", "Champion R2 on the last 7 days."),
    _spec(RMSE_CURRENT, "gauge", "monitoring", "Champion RMSE on the last 7 days."),
    _spec(MAE_CURRENT, "gauge", "monitoring", "Champion MAE on the last 7 days."),
    _spec(DRIFT_SHARE, "gauge", "monitoring", "Measured share of drifted monitored columns."),
    _spec(DRIFT_DETECTED, "gauge", "monitoring", "1 if the drift share reached the threshold."),
    _spec(DRIFT_COLUMN_SCORE, "gauge", "monitoring", "Drift test score of a column.", "column"),
    _spec(
        RETRAIN_LEVEL, "gauge", "monitoring", "Last retraining decision level (0 = P0 ... 4 = P4)."
    ),
    _spec(RETRAIN_DECISIONS, "counter", "monitoring", "Retraining decisions, by level.", "level"),
    _spec(MONITORING_SUCCESS, "gauge", "monitoring", "Unix time of the last monitoring result."),
)
SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}
# Label values pushed at 0 before they happen (see the module docstring).
KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    TRAINING_RUNS: TRAINING_STATUSES,
    DEPLOYMENTS: DECISIONS,
    RETRAIN_DECISIONS: RETRAIN_LEVELS,
}

LabelValues = tuple[str, ...]
Totals = dict[str, dict[LabelValues, float]]


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


def _gauge(name: str, series: Mapping[LabelValues, float] | float) -> GaugeMetricFamily:
    spec = SPECS[name]
    family = GaugeMetricFamily(name, spec.help, labels=list(spec.labels))
    for labels, value in series.items() if isinstance(series, Mapping) else [((), series)]:
        family.add_metric(list(labels), value)
    return family


def _counter(name: str, series: Mapping[LabelValues, float]) -> CounterMetricFamily:
    spec = SPECS[name]
    family = CounterMetricFamily(name, spec.help, labels=list(spec.labels))
    for labels, value in sorted(series.items()):
        family.add_metric(list(labels), value)
    return family


def _label_value(text: str, limit: int = 40) -> str:
    """A bounded label value: label values are series, free text would make new ones."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", str(text))[:limit]


def _base_url(url: str) -> str:
    return (url if "://" in url else f"http://{url}").rstrip("/")


def _safe_location(url: str) -> str:
    """host:port only: a gateway URL may carry basic-auth credentials."""
    try:
        parts = urlsplit(_base_url(url))
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "?"


class BatchMetricsResource(dg.ConfigurableResource):
    """Pushes the platform's batch metrics; see the module docstring for the semantics."""

    pushgateway_url: str = ""
    job: str = "bike_traffic"
    timeout_s: float = 5.0

    def group(self, step: Step) -> str:
        """The `job` grouping key of a step's group on the gateway."""
        return f"{self.job}_{step}"

    # -- ingestion ------------------------------------------------------------------------------
    def push_ingested(self, rows: int, *, run_id: str | None = None) -> bool:
        """Rows written by a successful ingestion run (`run_id` kept for the callers' sake)."""
        if rows < 0:
            dg.get_dagster_logger(__name__).warning("ingested rows %s < 0 not pushed", rows)
            return False
        return self._push_step(
            "ingestion",
            gauges={RECORDS_LAST_RUN: float(rows), INGESTION_SUCCESS: time.time()},
            add={RECORDS_INGESTED: ((), float(rows))},
        )

    # -- training -------------------------------------------------------------------------------
    def push_training(self, status: str, *, run_id: str | None = None) -> bool:
        """One training run ended with `status` (success, failed)."""
        gauges = {TRAINING_SUCCESS: time.time()} if status == "success" else {}
        return self._push_step(
            "training", gauges=gauges, add={TRAINING_RUNS: ((_label_value(status),), 1.0)}
        )

    # -- evaluation and promotion ---------------------------------------------------------------
    def push_evaluation(
        self,
        scores: Mapping[str, Mapping[str, Mapping[str, float]]],
        decision: str,
        reason_kind: str = "",
        *,
        run_id: str | None = None,
    ) -> bool:
        """An evaluation finished: `scores[split][model][metric]` (r2, rmse, mae of challenger,
        champion, naive on test_baseline/test_current) and its decision, counted once here,
        whatever stops the run afterwards (a naive-gate REJECT never reaches `champion`)."""
        decision = _label_value(decision)
        families: list[Metric] = []
        for metric, name in (
            ("r2", EVALUATION_R2),
            ("rmse", EVALUATION_RMSE),
            ("mae", EVALUATION_MAE),
        ):
            series: dict[LabelValues, float] = {
                (_label_value(split), _label_value(model)): value
                for split, by_model in scores.items()
                for model, values in by_model.items()
                if (value := _finite(values.get(metric))) is not None
            }
            if series:
                families.append(_gauge(name, series))
        families.append(
            _gauge(LAST_DECISION, {(decision, _label_value(reason_kind), run_id or ""): 1.0})
        )
        return self._push_step(
            "evaluation",
            gauges={EVALUATION_SUCCESS: time.time()},
            families=families,
            add={DEPLOYMENTS: ((decision,), 1.0)},
        )

    def push_deployment(self, decision: str, *, run_id: str | None = None) -> bool:
        """What the champion step (or a rollback) did: DEPLOY (pointer moved), SKIP, REJECT,
        ROLLBACK. Counted unless the evaluation of the same run already counted it."""
        decision = _label_value(decision)
        totals = self._read_group("evaluation")
        if totals is None:
            return False
        last = next(iter(totals.get(LAST_DECISION, {})), None)  # (decision, reason, run_id)
        counted: str | None = decision
        if run_id and last is not None and last[2] == run_id:
            # The evaluation of this run counted its decision; the champion step only adds a
            # promotion it forced over that decision.
            counted = "FORCE" if decision == "DEPLOY" and last[0] != "DEPLOY" else None
        moved = decision in ("DEPLOY", "ROLLBACK")
        return self._push_step(
            "evaluation",
            gauges={LAST_PROMOTION: time.time()} if moved else {},
            add={DEPLOYMENTS: ((counted,), 1.0)} if counted else {},
            totals=totals,
            empty_ok=True,
        )

    # -- monitoring -----------------------------------------------------------------------------
    def push_health(
        self, r2: float | None, rmse: float | None, *, mae: float | None = None
    ) -> bool:
        """The champion's scores on the last 7 days; nothing is pushed when none was measured."""
        gauges = {
            name: value
            for name, raw in ((R2_CURRENT, r2), (RMSE_CURRENT, rmse), (MAE_CURRENT, mae))
            if (value := _finite(raw)) is not None
        }
        if not gauges:
            return False
        return self._push_step("monitoring", gauges={**gauges, MONITORING_SUCCESS: time.time()})

    def push_drift(
        self,
        share: float | None,
        detected: bool,
        *,
        columns: Mapping[str, float | Mapping[str, Any]] | None = None,
    ) -> bool:
        """The measured drift share, whether it reached the threshold, per-column scores
        (`columns` maps a column to its score, or to the drift measure's `{"score": ...}`)."""
        value = _finite(share)
        if value is None:
            return False  # a drift that was not measured is not a 0
        families: list[Metric] = []
        scores: dict[LabelValues, float] = {
            (_label_value(column),): score
            for column, raw in (columns or {}).items()
            if (score := _finite(raw.get("score") if isinstance(raw, Mapping) else raw)) is not None
        }
        if scores:
            families.append(_gauge(DRIFT_COLUMN_SCORE, scores))
        return self._push_step(
            "monitoring",
            gauges={
                DRIFT_SHARE: value,
                DRIFT_DETECTED: float(detected),
                MONITORING_SUCCESS: time.time(),
            },
            families=families,
        )

    def push_retrain_decision(self, level: str) -> bool:
        """The retraining decision (P0..P4) the sensor took on a new pair of reports."""
        if level not in RETRAIN_LEVELS:
            dg.get_dagster_logger(__name__).warning("unknown retrain level %r not pushed", level)
            return False
        return self._push_step(
            "monitoring",
            gauges={RETRAIN_LEVEL: float(RETRAIN_LEVELS.index(level))},
            add={RETRAIN_DECISIONS: ((level,), 1.0)},
        )

    # -- plumbing -------------------------------------------------------------------------------
    def _read_group(self, step: Step) -> Totals | None:
        """The samples of one group as the gateway holds them now; None when it cannot say."""
        log = dg.get_dagster_logger(__name__)
        if not self.pushgateway_url.strip():
            return None
        try:
            response = requests.get(
                f"{_base_url(self.pushgateway_url)}/metrics", timeout=self.timeout_s
            )
            response.raise_for_status()
            families = list(text_string_to_metric_families(response.text))
        except Exception as exc:  # connection, HTTP status, unparsable text: logged, never raised
            log.warning(
                "totals not read from %s: %s: %s",
                _safe_location(self.pushgateway_url),
                type(exc).__name__,
                exc,
            )
            return None
        job = self.group(step)
        totals: Totals = {}
        for family in families:
            for sample in family.samples:
                spec = SPECS.get(sample.name)
                if spec is None or sample.labels.get("job") != job:
                    continue
                key = tuple(sample.labels.get(label, "") for label in spec.labels)
                totals.setdefault(sample.name, {})[key] = float(sample.value)
        return totals

    def _push_step(
        self,
        step: Step,
        *,
        gauges: Mapping[str, float] | None = None,
        families: Iterable[Metric] = (),
        add: Mapping[str, tuple[LabelValues, float]] | None = None,
        totals: Totals | None = None,
        empty_ok: bool = False,
    ) -> bool:
        """Push gauges, prepared families and counter increments into the group of `step`."""
        out: list[Metric] = [_gauge(name, value) for name, value in (gauges or {}).items()]
        out.extend(families)
        if add:
            if totals is None:
                totals = self._read_group(step) if self.pushgateway_url.strip() else {}
            if totals is None:
                return False
            for name, (labels, amount) in add.items():
                known: list[LabelValues] = [(v,) for v in KNOWN_VALUES.get(name, ())] or [()]
                series: dict[LabelValues, float] = dict.fromkeys(known, 0.0)
                series.update(totals.get(name, {}))
                series[labels] = series.get(labels, 0.0) + amount
                out.append(_counter(name, series))
        if not out:
            return empty_ok
        return self._push(step, out)

    def _push(self, step: Step, families: list[Metric]) -> bool:
        log = dg.get_dagster_logger(__name__)
        names = ", ".join(f.name for f in families)
        if not self.pushgateway_url.strip():
            log.debug("Pushgateway not configured, %s not pushed", names)
            return False
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        try:
            pushadd_to_gateway(
                self.pushgateway_url,
                job=self.group(step),
                registry=registry,
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
