"""The one job runner of the demo: a job of the code location, in process, on the terminal as
one progress line per step (bike_assets.demo.progress).

The run's only logger is that progress printer (in place of Dagster's console logger, so no DEBUG
lines); runs still log everything to DAGSTER_HOME (visible in `dagster dev`).
A failed run stops the demo with the run's last failure message. `asset_value` reads what a run
materialized from the run itself: `Definitions.load_asset_value` builds its IO-manager context
with Dagster's default console logger at DEBUG, which printed "Loading file from ..." lines.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import date
from typing import Any, TextIO

import dagster as dg

from bike_assets.demo.progress import StepProgress

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: date, last: date) -> dict[str, str]:
    """The tags of one run over the partitions first..last (a single-run backfill)."""
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    name: str,
    *,
    run_config: Mapping[str, Any] | None = None,
    stream: TextIO | None = None,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    """Run job `name` of `defs`, its steps' progress printed to `stream` (default stdout)."""
    with StepProgress(sys.stdout if stream is None else stream) as progress:
        # Definitions-level loggers are the jobs' default loggers: the merged copy's jobs log to
        # the printer alone (merging is cheap next to a run: the assets are not rebuilt)
        printed = dg.Definitions.merge(
            defs, dg.Definitions(loggers={"progress": progress.logger_def()})
        )
        # a job instantiates only the loggers its run config names (none named: the console)
        config = {**(run_config or {}), "loggers": {"progress": {}}}
        result: dg.ExecuteInProcessResult = printed.resolve_job_def(name).execute_in_process(
            instance=instance, raise_on_error=False, run_config=config, **kwargs
        )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        raise SystemExit(f"{name} failed: {failures[-1] if failures else 'see dagster logs'}")
    return result


def asset_value(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    result: dg.ExecuteInProcessResult,
    key: str,
) -> Any:
    """The value of asset `key` as run `result` materialized it; the stored value otherwise."""
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    if dg.AssetKey(key) in materialized:
        return result.asset_value(key)
    return defs.load_asset_value(key, instance=instance)
