"""The warehouse: DuckDB on a laptop, BigQuery on GCP.

Assets that are tables (raw_counts, counters, datasets, predictions) go through an IO manager, so
Dagster owns partition overwrites. Append-only audit tables (promotion_log, decision_log) go
through `Warehouse.append`, because an IO manager would replace them on every write.

Guarantee: overwriting a partition, or the whole partition range of a single-run backfill, is ONE
transaction. The stock IO managers delete the slice and insert the new rows in two commits (and
skip the insert for an empty frame), so a run killed between the two left the days empty:

- DuckDB (`TidyDuckDBPandasIOManager`): the IO manager's connection is opened inside
  `BEGIN TRANSACTION` and committed only after the insert; any error, or a kill, rolls it back.
- BigQuery (`bigquery_io.StagedBigQueryPandasIOManager`): the frame is loaded into a staging
  table first, then one multi-statement transaction deletes the slice and copies the staging rows
  in. That path is not exercised against BigQuery here (none in CI).

Whether an empty or much smaller answer may replace stored days is decided before any write, by
the asset (`bike_assets.assets.ingestion`), from `Warehouse.stored_rows_by_day`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager, TableSlice
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient, _get_cleanup_statement
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from pydantic import Field

from bike_assets.schema import TIDY_COLUMNS, coerce_tidy, empty_tidy
from bike_assets.settings import PARIS_TZ

# SQL below is built with f-strings only from this module's constants (schema, table names, the
# time zone) and the resource's own config (project, dataset); every value is a bound parameter.
# Hence the `# nosec B608` marks (ruff's S608 is waived for this file in pyproject.toml).
SCHEMA = "bike"


class TidyDuckDBPandasTypeHandler(DuckDBPandasTypeHandler):  # type: ignore[misc]
    """Loads raw counts back in the exact tidy dtypes they were written with.

    DuckDB hands back `object` strings and microsecond `Etc/UTC` timestamps; consumers (and
    `Definitions.load_asset_value`) should see the documented schema, not the storage's.
    """

    def load_input(
        self, context: dg.InputContext, table_slice: Any, connection: Any
    ) -> pd.DataFrame:
        if not _table_exists(connection, table_slice.schema, table_slice.table):
            # An asset whose every write so far was empty has no table (the stock handler skips
            # the CREATE for an empty frame): its consumers see no rows, not an error.
            return empty_tidy() if table_slice.table == "raw_counts" else pd.DataFrame()
        frame = super().load_input(context, table_slice, connection)
        if isinstance(frame, pd.DataFrame) and list(frame.columns) == TIDY_COLUMNS:
            return coerce_tidy(frame)
        return frame


def _table_exists(connection: Any, schema: str, table: str) -> bool:
    found = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


class TransactionalDuckDbClient(DuckDbClient):  # type: ignore[misc]
    """`DuckDbClient` whose connection is one transaction: delete + insert commit together.

    `DbIOManager.handle_output` runs `ensure_schema_exists`, `delete_table_slice` and the type
    handler's insert on the connection `connect` yields; DuckDB runs DDL inside transactions, so
    all three commit at the end of the `with` block or not at all. Reads get a read transaction.
    """

    @staticmethod
    def delete_table_slice(
        context: dg.OutputContext, table_slice: TableSlice, connection: Any
    ) -> None:
        # The stock client runs the DELETE and swallows "no such table"; inside a transaction a
        # failed statement aborts the transaction, so ask first.
        if _table_exists(connection, table_slice.schema, table_slice.table):
            connection.execute(_get_cleanup_statement(table_slice))

    @staticmethod
    @contextmanager
    def connect(context: Any, _: Any) -> Iterator[duckdb.DuckDBPyConnection]:
        with DuckDbClient.connect(context, _) as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                # A broken connection cannot roll back, but then nothing was committed either.
                with suppress(duckdb.Error):
                    conn.execute("ROLLBACK")
                conn.close()  # the stock connect closes only on success
                raise
            conn.execute("COMMIT")


class TidyDuckDBPandasIOManager(DuckDBPandasIOManager):  # type: ignore[misc]
    """DuckDB IO manager: tidy dtypes on load, one transaction per overwrite (module docstring)."""

    @staticmethod
    def type_handlers() -> Sequence[Any]:
        return [TidyDuckDBPandasTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(
            db_client=TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="TidyDuckDBPandasIOManager",
        )


def partition_expr(env: str, column: str = "timestamp") -> str:
    """SQL giving the Paris-local wall time of a UTC timestamp `column` (a constant name).

    Dagster writes daily partition bounds as Paris wall-clock strings without offset, so the
    comparison must be made in Paris local time for DST days to hold 23 or 25 hours.
    """
    if env == "gcp":
        return f"DATETIME({column}, 'Europe/Paris')"
    return f"timezone('Europe/Paris', {column})"


class Warehouse(dg.ConfigurableResource, ABC):  # type: ignore[misc]
    """Append-only audit tables and ad-hoc reads."""

    @abstractmethod
    def append(self, table: str, frame: pd.DataFrame) -> int:
        """Append rows to `table` (created on first use); returns the rows written."""

    @abstractmethod
    def read(self, table: str) -> pd.DataFrame:
        """The whole table, empty frame if it does not exist yet."""

    @abstractmethod
    def read_between(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Rows of `table` with `start <= timestamp < end` (one filtered query: the cost follows
        the window, not the history); empty frame if the table does not exist yet."""

    def read_counts(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """raw_counts rows with `start <= timestamp < end`, in the tidy schema."""
        frame = self.read_between("raw_counts", start, end)
        return coerce_tidy(frame if len(frame.columns) else pd.DataFrame(columns=TIDY_COLUMNS))

    @abstractmethod
    def last_count_timestamp(self) -> pd.Timestamp | None:
        """The latest hour in raw_counts (None when nothing is ingested)."""

    @abstractmethod
    def stored_rows_by_day(self, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, int]:
        """Rows of raw_counts per Paris day (`YYYY-MM-DD`) for `start <= timestamp < end`.

        Days without rows are absent. Reads only the window (one grouped query), so the cost
        follows the window, not the history.
        """


class DuckDBWarehouse(Warehouse):
    database: str = Field(
        description="Path of the DuckDB file (the same file the IO manager uses)."
    )

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
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{table} AS "  # nosec B608
                "SELECT * FROM rows_to_append LIMIT 0"
            )
            conn.execute(f"INSERT INTO {SCHEMA}.{table} BY NAME SELECT * FROM rows_to_append")  # nosec B608
            conn.unregister("rows_to_append")
        return len(frame)

    def read(self, table: str) -> pd.DataFrame:
        if not self.read_exists(table):
            return pd.DataFrame()
        with self._duckdb().get_connection() as conn:
            return conn.execute(f"SELECT * FROM {SCHEMA}.{table}").df()  # nosec B608

    def read_between(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        if not self.read_exists(table):
            return pd.DataFrame()
        with self._duckdb().get_connection() as conn:
            return conn.execute(
                f"SELECT * FROM {SCHEMA}.{table} WHERE timestamp >= ? AND timestamp < ?",  # nosec B608
                [start.to_pydatetime(), end.to_pydatetime()],
            ).df()

    def last_count_timestamp(self) -> pd.Timestamp | None:
        if not self.read_exists("raw_counts"):
            return None
        with self._duckdb().get_connection() as conn:
            row = conn.execute(f"SELECT max(timestamp) FROM {SCHEMA}.raw_counts").fetchone()  # nosec B608
        if not row or row[0] is None:
            return None
        return pd.Timestamp(row[0]).tz_convert("UTC")

    def stored_rows_by_day(self, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, int]:
        if not self.read_exists("raw_counts"):
            return {}
        with self._duckdb().get_connection() as conn:
            rows = conn.execute(
                f"SELECT strftime(timezone('{PARIS_TZ}', timestamp), '%Y-%m-%d') AS day, "  # nosec B608
                f"count(*) FROM {SCHEMA}.raw_counts "
                "WHERE timestamp >= ? AND timestamp < ? GROUP BY day",
                [start.to_pydatetime(), end.to_pydatetime()],
            ).fetchall()
        return {str(day): int(n) for day, n in rows}

    def read_exists(self, table: str) -> bool:
        with self._duckdb().get_connection() as conn:
            return _table_exists(conn, SCHEMA, table)


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
            query = f"SELECT * FROM `{self.project}.{self.dataset}.{table}`"  # nosec B608
            return self._client().query(query).to_dataframe()
        except NotFound:
            return pd.DataFrame()

    def read_between(self, table: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        query = (
            f"SELECT * FROM `{self.project}.{self.dataset}.{table}` "  # nosec B608
            "WHERE timestamp >= @start AND timestamp < @end"
        )
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", start.to_pydatetime()),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end.to_pydatetime()),
            ]
        )
        try:
            return self._client().query(query, job_config=config).to_dataframe()
        except NotFound:
            return pd.DataFrame()

    def stored_rows_by_day(self, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, int]:
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        query = (
            f"SELECT FORMAT_DATETIME('%Y-%m-%d', DATETIME(timestamp, '{PARIS_TZ}')) AS day, "  # nosec B608
            f"COUNT(*) AS n FROM `{self.project}.{self.dataset}.raw_counts` "
            "WHERE timestamp >= @start AND timestamp < @end GROUP BY day"
        )
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", start.to_pydatetime()),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end.to_pydatetime()),
            ]
        )
        try:
            rows = self._client().query(query, job_config=config).result()
        except NotFound:
            return {}
        return {str(row["day"]): int(row["n"]) for row in rows}

    def last_count_timestamp(self) -> pd.Timestamp | None:
        query = f"SELECT max(timestamp) AS last FROM `{self.project}.{self.dataset}.raw_counts`"  # nosec B608
        rows = list(self._client().query(query).result())
        if not rows or rows[0]["last"] is None:
            return None
        return pd.Timestamp(rows[0]["last"]).tz_convert("UTC")
