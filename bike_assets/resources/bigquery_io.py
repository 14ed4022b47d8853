"""BigQuery pandas IO manager whose partition overwrite is one transaction (GCP deployments).

dagster-gcp's IO manager runs `DELETE ... WHERE <partition>` and then a load job: two commits, and
no load at all for an empty frame, so a run that dies in between leaves the days empty. Here the
frame is first loaded into a staging table (a failure there changes nothing), then ONE
multi-statement transaction deletes the slice and copies the staging rows in, then the staging
table is dropped. Unpartitioned tables keep dagster-gcp's behaviour.

Not run against BigQuery in this repository's tests (no BigQuery in CI); `staged_overwrite_sql`
is the part that can be checked offline. Imported only by `resources/factory.py` on GCP.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.definitions.metadata import TableMetadataSet
from dagster._core.storage.db_io_manager import DbIOManager, TableSlice
from dagster_gcp.bigquery.io_manager import BigQueryClient, _partition_where_clause
from dagster_gcp_pandas import BigQueryPandasIOManager, BigQueryPandasTypeHandler
from google.cloud import bigquery


def staged_overwrite_sql(
    table: str, staging: str | None, where: str, columns: Sequence[str] = ()
) -> str:
    """One script replacing the rows of `table` matching `where` with all of `staging`'s rows.

    Columns are named, so an existing table whose column order differs still gets them right.
    `staging=None` (an empty frame, which the asset only lets through by explicit config) only
    deletes: a single DML statement is atomic on its own.
    """
    # Table, staging and column names come from Dagster's table slice and the asset's frame,
    # `where` from dagster-gcp's own partition clause: no outside input reaches this SQL.
    delete = f"DELETE FROM `{table}` WHERE {where};"  # noqa: S608  # nosec B608
    if staging is None:
        return delete
    names = ", ".join(f"`{c}`" for c in columns) if columns else "*"
    into = f" ({names})" if columns else ""
    insert = f"INSERT INTO `{table}`{into} SELECT {names} FROM `{staging}`;"  # noqa: S608  # nosec B608
    return f"BEGIN TRANSACTION;\n{delete}\n{insert}\nCOMMIT TRANSACTION;"


class StagedBigQueryClient(BigQueryClient):  # type: ignore[misc]
    @staticmethod
    def delete_table_slice(
        context: dg.OutputContext, table_slice: TableSlice, connection: Any
    ) -> None:
        # Partitioned slices are deleted by the handler, in the transaction of the insert.
        if not table_slice.partition_dimensions:
            BigQueryClient.delete_table_slice(context, table_slice, connection)


class StagedBigQueryPandasTypeHandler(BigQueryPandasTypeHandler):  # type: ignore[misc]
    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: Any,
    ) -> None:
        if not table_slice.partition_dimensions:
            super().handle_output(context, table_slice, obj, connection)
            return
        table = f"{table_slice.database}.{table_slice.schema}.{table_slice.table}"
        staging = None
        upper = obj.rename(columns=str.upper)  # dagster-gcp's column convention
        if not obj.empty:
            staging = f"{table}__staging_{uuid.uuid4().hex[:12]}"
            connection.load_table_from_dataframe(
                upper,
                staging,
                job_config=bigquery.LoadJobConfig(write_disposition="WRITE_TRUNCATE"),
            ).result()
            # DDL may not run inside a BigQuery transaction: create the target beforehand.
            connection.query(f"CREATE TABLE IF NOT EXISTS `{table}` LIKE `{staging}`").result()
        try:
            # dagster-gcp's own (private) WHERE builder: the clause its stock delete would use.
            where = _partition_where_clause(table_slice.partition_dimensions)
            script = staged_overwrite_sql(table, staging, where, list(upper.columns))
            connection.query(script).result()
        finally:
            if staging is not None:
                connection.delete_table(staging, not_found_ok=True)
        context.add_output_metadata(
            dict(TableMetadataSet(partition_row_count=len(obj), storage_kind="bigquery"))
        )


class StagedBigQueryPandasIOManager(BigQueryPandasIOManager):  # type: ignore[misc]
    @staticmethod
    def type_handlers() -> Sequence[Any]:
        return [StagedBigQueryPandasTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(
            db_client=StagedBigQueryClient(
                write_mode=self.write_mode, gcp_credentials=self.gcp_credentials
            ),
            io_manager_name="StagedBigQueryPandasIOManager",
            database=self.project,
            schema=self.dataset,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
        )
