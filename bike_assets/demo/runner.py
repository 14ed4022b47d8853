"""The one job runner of the demo: a job of the code location, in process, quiet on the terminal.

Runs still log everything to DAGSTER_HOME (visible in `dagster dev`); the terminal gets the story.
A failed run stops the demo with the run's last failure message. `asset_value` reads what a run
materialized from the run itself: `Definitions.load_asset_value` builds its IO-manager context
with Dagster's default console logger at DEBUG, which printed "Loading file from ..." lines.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: date, last: date) -> dict[str, str]:
    """The tags of one run over the partitions first..last (a single-run backfill)."""
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def run_job(
    defs: dg.Definitions, instance: dg.DagsterInstance, name: str, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    result: dg.ExecuteInProcessResult = defs.resolve_job_def(name).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, **kwargs
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
