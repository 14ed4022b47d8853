"""The warehouse: DuckDB on a laptop, BigQuery on GCP.

Assets that are tables (raw_counts, counters, datasets, predictions) go through an IO manager, so
Dagster owns partition overwrites. Append-only audit tables (promotion_log, decision_log) go
through `Warehouse.append`, because an IO manager would replace them on every write.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from pydantic import Field

from bike_assets.schema import TIDY_COLUMNS, coerce_tidy

SCHEMA = "bike"


class TidyDuckDBPandasTypeHandler(DuckDBPandasTypeHandler):  # type: ignore[misc]
    """Loads raw counts back in the exact tidy dtypes they were written with.

    DuckDB hands back `object` strings and microsecond `Etc/UTC` timestamps; consumers (and
    `Definitions.load_asset_value`) should see the documented schema, not the storage's.
    """

    def load_input(self, context: dg.InputContext, table_slice: Any, connection: Any) -> pd.DataFrame:
        frame = super().load_input(context, table_slice, connection)
        if isinstance(frame, pd.DataFrame) and list(frame.columns) == TIDY_COLUMNS:
            return coerce_tidy(frame)
        return frame


class TidyDuckDBPandasIOManager(DuckDBPandasIOManager):  # type: ignore[misc]
    @staticmethod
    def type_handlers() -> Sequence[Any]:
        return [TidyDuckDBPandasTypeHandler()]


def partition_expr(env: str) -> str:
    """SQL giving the Paris-local wall time of the `timestamp` column (stored in UTC).

    Dagster writes daily partition bounds as Paris wall-clock strings without offset, so the
    comparison must be made in Paris local time for DST days to hold 23 or 25 hours.
    """
    if env == "gcp":
        return "DATETIME(timestamp, 'Europe/Paris')"
    return "timezone('Europe/Paris', timestamp)"


class Warehouse(dg.ConfigurableResource, ABC):  # type: ignore[misc]
    """Append-only audit tables and ad-hoc reads."""

    @abstractmethod
    def append(self, table: str, frame: pd.DataFrame) -> int:
        """Append rows to `table` (created on first use); returns the rows written."""

    @abstractmethod
    def read(self, table: str) -> pd.DataFrame:
        """The whole table, empty frame if it does not exist yet."""


class DuckDBWarehouse(Warehouse):
    database: str = Field(description="Path of the DuckDB file (the same file the IO manager uses).")

    def _duckdb(self) -> DuckDBResource:
        # DuckDBResource retries while another process holds the file lock (racing writers).
        return DuckDBResource(database=self.database)

    def append(self, table: str, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        with self._duckdb().get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
            conn.register("rows_to_append", frame)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} AS "
                "SELECT * FROM rows_to_append LIMIT 0"
            )
            conn.execute(f"INSERT INTO {SCHEMA}.{table} BY NAME SELECT * FROM rows_to_append")
            conn.unregister("rows_to_append")
        return len(frame)

    def read(self, table: str) -> pd.DataFrame:
        with self._duckdb().get_connection() as conn:
            exists = conn.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [SCHEMA, table],
            ).fetchone()
            if not exists or not exists[0]:
                return pd.DataFrame()
            return conn.execute(f"SELECT * FROM {SCHEMA}.{table}").df()


class BigQueryWarehouse(Warehouse):
    project: str
    dataset: str = "bike_traffic"
    location: str = "EU"

    def _client(self) -> Any:
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, location=self.location)

    def append(self, table: str, frame: pd.DataFrame) -> int:
        if frame.empty:
            return 0
        from google.cloud import bigquery

        job = self._client().load_table_from_dataframe(
            frame,
            f"{self.project}.{self.dataset}.{table}",
            job_config=bigquery.LoadJobConfig(write_disposition="WRITE_APPEND"),
        )
        job.result()
        return len(frame)

    def read(self, table: str) -> pd.DataFrame:
        from google.api_core.exceptions import NotFound

        try:
            query = f"SELECT * FROM `{self.project}.{self.dataset}.{table}`"  # noqa: S608
            return self._client().query(query).to_dataframe()
        except NotFound:
            return pd.DataFrame()
