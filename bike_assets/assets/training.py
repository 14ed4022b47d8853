"""Training: the challenger, fitted on the sliding window train_baseline + train_current."""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.ml.model import ModelParams, fit_with_target_selection
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking

_DEFAULTS = ModelParams()  # the defaults chosen by time-based validation (bench/model_quality)


class TrainingConfig(dg.Config):
    kind: Literal["hgb", "random_forest"] = Field(_DEFAULTS.kind, description="Model family.")
    learning_rate: float = _DEFAULTS.learning_rate
    max_iter: int = _DEFAULTS.max_iter
    max_leaf_nodes: int = _DEFAULTS.max_leaf_nodes
    min_samples_leaf: int = _DEFAULTS.min_samples_leaf
    l2_regularization: float = _DEFAULTS.l2_regularization
    n_estimators: int = _DEFAULTS.n_estimators
    max_depth: int | None = _DEFAULTS.max_depth
    random_state: int = _DEFAULTS.random_state
    validation_days: int = Field(7, ge=1, description="Time-based hold-out to pick the target.")

    def params(self) -> ModelParams:
        return ModelParams(
            kind=self.kind,
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            random_state=self.random_state,
        )


@dataclass(frozen=True)
class TrainedModel:
    """What downstream assets need to find and describe the challenger artifact."""

    version: str
    model_uri: str
    mlflow_run_id: str
    params: dict[str, Any]
    target: str
    trained_range: dict[str, str]
    train_rows: int
    counters: list[str] = field(default_factory=list)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)


@dg.asset(
    group_name="training",
    kinds={"scikit-learn", "mlflow"},
    io_manager_key="object_io_manager",
    description="A new model trained on train_baseline + train_current, logged and registered.",
)
def challenger_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    train_baseline: pd.DataFrame,
    train_current: pd.DataFrame,
    model_store: ModelStore,
    tracking: MlflowTracking,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    train = pd.concat([train_baseline, train_current], ignore_index=True)
    params = config.params()
    fit = fit_with_target_selection(train, params, validation_days=config.validation_days)
    trained_range = {
        "start": train["timestamp"].min().isoformat(),
        "end": train["timestamp"].max().isoformat(),
    }
    logged = tracking.log_training(
        fit.pipeline,
        params={**asdict(params), "target": fit.target, "train_rows": len(train)},
        metrics={f"validation_{t}_{m}": v for t, s in fit.validation.items() for m, v in s.items()},
        tags={
            "dagster_run_id": context.run.run_id,
            "trained_start": trained_range["start"],
            "trained_end": trained_range["end"],
            "train_baseline_rows": str(len(train_baseline)),
            "train_current_rows": str(len(train_current)),
        },
        run_name=f"challenger-{context.run.run_id[:8]}",
    )
    model_uri = model_store.save(fit.pipeline, logged.version)
    trained = TrainedModel(
        version=logged.version,
        model_uri=model_uri,
        mlflow_run_id=logged.run_id,
        params=asdict(params),
        target=fit.target,
        trained_range=trained_range,
        train_rows=len(train),
        counters=sorted(train["counter_id"].astype(str).unique()),
        validation=fit.validation,
    )
    batch_metrics.push_training("success", run_id=context.run.run_id)
    validation_md = pd.DataFrame(fit.validation).T.round(3).to_markdown() if fit.validation else ""
    return dg.MaterializeResult(
        value=trained,
        metadata={
            "version": logged.version,
            "model_uri": model_uri,
            "mlflow_run_id": logged.run_id,
            "target": fit.target,
            "train_rows": len(train),
            "trained_range": dg.MetadataValue.json(trained_range),
            "target_selection (time-based validation)": dg.MetadataValue.md(
                validation_md or "_n/a_"
            ),
        },
    )
