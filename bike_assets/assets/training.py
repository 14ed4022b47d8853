"""Training: the challenger procedure, evaluated on held-out weeks and refitted for serving.

Two artifacts per version, one procedure: the *evaluated* pipeline is fitted on train_baseline
+ train_current only (so evaluation_report scores it on hours it never saw); the *served*
pipeline is the same procedure, with the same choices, refitted on every hour up to the last
complete day except the regression window (test_baseline stays unseen by every model). The
served one is what the registry's version and the champion pointer name.
"""

from dataclasses import asdict
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from bike_assets.lifecycle.trained import TrainedModel, hours_of
from bike_assets.ml.model import ModelParams, fit_with_selection, refit
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking

_DEFAULTS = ModelParams()  # the defaults chosen by time-based validation (bench/model_quality)


class TrainingConfig(dg.Config):
    kind: Literal["hgb", "random_forest", "mlp"] = Field(
        _DEFAULTS.kind,
        description="Model family: hgb (default), random_forest, or mlp (a small neural net).",
    )
    learning_rate: float = _DEFAULTS.learning_rate
    max_iter: int = _DEFAULTS.max_iter
    max_leaf_nodes: int = _DEFAULTS.max_leaf_nodes
    min_samples_leaf: int = _DEFAULTS.min_samples_leaf
    l2_regularization: float = _DEFAULTS.l2_regularization
    n_estimators: int = _DEFAULTS.n_estimators
    max_depth: int | None = _DEFAULTS.max_depth
    random_state: int = _DEFAULTS.random_state
    validation_days: int = Field(
        28, ge=1, description="Time-based hold-out (end of the training rows) for the choices."
    )

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


@dg.asset(
    group_name="training",
    kinds={"scikit-learn", "mlflow"},
    io_manager_key="object_io_manager",
    description="The challenger procedure: a pipeline fitted on train_baseline + train_current "
    "(evaluated), and the same procedure refitted on every hour up to the last complete day "
    "except the regression window (served if promoted); logged and registered.",
)
def challenger_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    train_baseline: pd.DataFrame,
    test_baseline: pd.DataFrame,
    train_current: pd.DataFrame,
    test_current: pd.DataFrame,
    model_store: ModelStore,
    tracking: MlflowTracking,
    batch_metrics: BatchMetricsResource,
) -> dg.MaterializeResult:
    train = pd.concat([train_baseline, train_current], ignore_index=True)
    fit = fit_with_selection(train, config.params(), validation_days=config.validation_days)
    # Serve fresh: the latest week too, never the regression window.
    everything = pd.concat([train_baseline, train_current, test_current], ignore_index=True)
    served = refit(fit, everything)
    excluded = [hours_of(test_baseline)] if len(test_baseline) else []
    evaluated_range: dict[str, Any] = {**hours_of(train), "excluded": excluded}
    trained_range: dict[str, Any] = {**hours_of(everything), "excluded": excluded}
    logged = tracking.log_training(
        served,
        params={**asdict(fit.params), "target": fit.target, "train_rows": len(everything)},
        metrics={f"validation_{k}_{m}": v for k, s in fit.validation.items() for m, v in s.items()},
        tags={
            "trained_start": trained_range["start"],
            "trained_end": trained_range["end"],
            "evaluated_start": evaluated_range["start"],
            "evaluated_end": evaluated_range["end"],
            "regression_window": " .. ".join(excluded[0].values()) if excluded else "",
        },
        run_name=f"challenger-{context.run.run_id[:8]}",
        dagster_run_id=context.run.run_id,
        extra_pipelines={"evaluated": fit.pipeline},
    )
    model_uri = model_store.save(served, logged.version)
    evaluated_uri = model_store.save(fit.pipeline, f"{logged.version}-evaluated")
    trained = TrainedModel(
        version=logged.version,
        model_uri=model_uri,
        mlflow_run_id=logged.run_id,
        params=asdict(fit.params),
        target=fit.target,
        trained_range=trained_range,
        train_rows=len(train),
        counters=sorted(train["counter_id"].astype(str).unique()),
        validation=fit.validation,
        evaluated_uri=evaluated_uri,
        evaluated_range=evaluated_range,
        served_rows=len(everything),
    )
    batch_metrics.push_training("success", run_id=context.run.run_id)
    validation_md = (
        pd.DataFrame(fit.validation).T[["r2", "rmse", "mae"]].round(3).to_markdown()
        if fit.validation
        else ""
    )
    return dg.MaterializeResult(
        value=trained,
        metadata={
            "version": logged.version,
            "model_uri": model_uri,
            "mlflow_run_id": logged.run_id,
            # a link into the MLflow UI on a tracking server, the run's folder otherwise (#14)
            "mlflow_run": tracking.run_link(logged.run_id),
            "annual_features": fit.params.annual,
            "blend": fit.params.blend,
            "evaluated_rows": len(train),
            "served_rows": len(everything),
            "evaluated_range": dg.MetadataValue.json(evaluated_range),
            "served_range": dg.MetadataValue.json(trained_range),
            "selection (time-based hold-out)": dg.MetadataValue.md(validation_md or "_n/a_"),
        },
    )
