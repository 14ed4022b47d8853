"""Choose every resource's implementation from the settings (`BIKE_ENV`, `BIKE_SOURCE`).

This is the only place that knows local vs GCP, so assets only see typed resources.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dagster as dg

from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.batch_metrics import BatchMetricsResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.report_store import GcsReportStore, LocalReportStore
from bike_assets.resources.thresholds import DecisionThresholds
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import (
    SCHEMA,
    BigQueryWarehouse,
    DuckDBWarehouse,
    TidyDuckDBPandasIOManager,
    partition_expr,
)
from bike_assets.settings import Settings
from bike_assets.sources.base import CountsSource


def build_source(settings: Settings) -> CountsSource:
    if settings.source == "paris":
        from bike_assets.sources.paris_api import ParisOpenDataClient

        return ParisOpenDataClient(
            base_url=settings.paris_url,
            timeout_s=settings.paris_timeout_s,
            max_retries=settings.paris_max_retries,
            retry_budget_s=settings.paris_retry_budget_s,
        )
    from bike_assets.sources.synthetic import SyntheticCounts

    return SyntheticCounts(
        seed=settings.synthetic_seed,
        n_counters=settings.synthetic_counters,
        drift_date=settings.synthetic_drift_date.isoformat()
        if settings.synthetic_drift_date
        else None,
        drift_kind=settings.synthetic_drift_kind,
    )


def from_env_var(name: str, value: str) -> Any:
    """`dg.EnvVar(name)` when `value` came from that variable, else the value itself.

    Dagster shows a resource's literal config in the UI (Resources page, GraphQL) but an EnvVar
    by name only, resolving it when a run or tick starts: secrets and URLs that may carry
    credentials must be EnvVars. A default (not from the environment) is shown as is.
    """
    raw = os.environ.get(name)
    if value and raw is not None and raw.strip() == value:
        return dg.EnvVar(name)
    return value


def with_storage(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    """Assets as the chosen warehouse stores them: the `duckdb` kind becomes `bigquery` on GCP,
    and a table partitioned on a UTC timestamp column (metadata `partition_column`) gets the
    IO manager's `partition_expr` in that warehouse's SQL."""
    store_kind = "bigquery" if settings.env == "gcp" else "duckdb"

    def adapt(spec: dg.AssetSpec) -> dg.AssetSpec:
        kinds = {store_kind if kind in ("duckdb", "bigquery") else kind for kind in spec.kinds}
        column = spec.metadata.get("partition_column")
        metadata = {"partition_expr": partition_expr(settings.env, column)} if column else {}
        return spec.replace_attributes(kinds=kinds).merge_attributes(metadata=metadata)

    mapped = dg.map_asset_specs(adapt, assets)
    return [a for a in mapped if isinstance(a, dg.AssetsDefinition)]


def build_resources(settings: Settings) -> dict[str, Any]:
    common: dict[str, Any] = {
        "decision_thresholds": DecisionThresholds.of(settings.thresholds),
        "source": build_source(settings),
        "alerts": DiscordResource(
            webhook_url=from_env_var("DISCORD_WEBHOOK_URL", settings.discord_webhook_url),
            state_dir=str(settings.data_dir / "alerts") if settings.env == "local" else "",
        ),
        "batch_metrics": BatchMetricsResource(
            pushgateway_url=from_env_var("PROMETHEUS_PUSHGATEWAY_URL", settings.pushgateway_url)
        ),
        "champion_store": ChampionStore(pointer_uri=settings.champion_pointer_uri),
    }
    if settings.env == "gcp":
        settings.validate_for_gcp()
        from dagster_gcp import GCSPickleIOManager, GCSResource

        from bike_assets.resources.bigquery_io import StagedBigQueryPandasIOManager

        gcs_root = f"gs://{settings.gcs_bucket}/{settings.gcs_prefix}"
        return {
            **common,
            "io_manager": StagedBigQueryPandasIOManager(
                project=settings.gcp_project, dataset=settings.bq_dataset
            ),
            "object_io_manager": GCSPickleIOManager(
                gcs=GCSResource(project=settings.gcp_project),
                gcs_bucket=settings.gcs_bucket,
                gcs_prefix=f"{settings.gcs_prefix}/dagster",
            ),
            "warehouse": BigQueryWarehouse(
                project=settings.gcp_project, dataset=settings.bq_dataset
            ),
            "model_store": ModelStore(root=gcs_root),
            "report_store": GcsReportStore(
                bucket=settings.gcs_bucket, prefix=settings.gcs_prefix, project=settings.gcp_project
            ),
            "tracking": MlflowTracking(
                tracking_uri=from_env_var("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
                artifact_location=f"{gcs_root}/mlartifacts",
                ui_url=settings.mlflow_ui_url,
            ),
        }
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **common,
        "io_manager": TidyDuckDBPandasIOManager(
            database=str(settings.warehouse_path), schema=SCHEMA
        ),
        "object_io_manager": dg.FilesystemIOManager(base_dir=str(settings.data_dir / "objects")),
        "warehouse": DuckDBWarehouse(database=str(settings.warehouse_path)),
        "model_store": ModelStore(root=str(settings.data_dir)),
        "report_store": LocalReportStore(
            root=str(settings.reports_dir), base_url=settings.reports_base_url
        ),
        "tracking": MlflowTracking(
            tracking_uri=from_env_var("MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
            artifact_location=str(settings.data_dir / "mlartifacts"),
            ui_url=settings.mlflow_ui_url,
        ),
    }
