"""The champion's recent level, refreshed every day from raw_counts (no retraining)."""

import dataclasses

import dagster as dg
import pandas as pd

from bike_assets.lifecycle.audit import record_decision
from bike_assets.lifecycle.champion_moves import read_champion
from bike_assets.lifecycle.regression_window import outside_window
from bike_assets.ml.level_update import LEVEL_WEEKS_NEEDED, refresh_level
from bike_assets.ml.paris_days import last_whole_day, paris_day_start
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse


@dg.asset(
    group_name="serving",
    # Only the latest day of raw_counts matters: with the whole history as a dependency, one
    # missing old day would hold the eager condition back for ever.
    deps=[dg.AssetDep("raw_counts", partition_mapping=dg.LastPartitionMapping()), "champion"],
    kinds={"scikit-learn"},
    automation_condition=dg.AutomationCondition.eager(),
    description="The served champion with its recent level (counter x hour-of-week of the last "
    "4 weeks) recomputed up to the last ingested Paris day: a new artifact of the same "
    "version, named by the pointer (level_as_of), which the API hot-reloads, and registered "
    "in MLflow (tagged level_update_of) with the `champion` alias moved to it. Runs when "
    "raw_counts lands; a no-op when the level is already that fresh. The trees and the "
    "training range stay as promoted; the regression window is never read.",
)
def champion_level(
    context: dg.AssetExecutionContext,
    champion_store: ChampionStore,
    model_store: ModelStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    pointer, broken = read_champion(champion_store)
    last = warehouse.last_count_timestamp()
    if pointer is None or last is None:
        why = broken or ("no champion yet" if pointer is None else "raw_counts is empty")
        return dg.MaterializeResult(metadata={"state": "skipped", "reason": why})
    # whole Paris days only: the level of a half-ingested day would look like a traffic drop
    last_day = last_whole_day(last)
    if pointer.level_as_of and pointer.level_as_of >= last_day.isoformat():
        return dg.MaterializeResult(
            metadata={"state": "up to date", "level_as_of": pointer.level_as_of}
        )
    end = paris_day_start(last_day, 1)
    recent = warehouse.read_counts(end - pd.Timedelta(weeks=LEVEL_WEEKS_NEEDED), end)
    recent, _ = outside_window(recent, warehouse)
    updated = refresh_level(model_store.load(pointer.model_uri), recent)
    uri = model_store.save(updated, f"{pointer.version}-level-{last_day.isoformat()}")
    registered = tracking.log_level_update(
        updated,
        of_version=pointer.version,
        level_as_of=last_day.isoformat(),
        dagster_run_id=context.run.run_id,
    )
    # read again just before writing (registration takes seconds): the window in which a
    # promotion could land between this read and the write stays as short as it can be
    latest, _ = read_champion(champion_store)
    if latest is None or latest.version != pointer.version:
        # a promotion landed meanwhile: its artifact is fresher than this update
        return dg.MaterializeResult(
            metadata={"state": "superseded", "reason": "new champion", "unused_version": registered}
        )
    moved = dataclasses.replace(
        latest, model_uri=uri, level_as_of=last_day.isoformat(), registry_version=registered
    )
    champion_store.write(moved)
    # the pointer is the source of truth; the alias follows it (as in `promote`)
    tracking.set_champion(registered)
    record_decision(
        warehouse,
        kind="level_update",
        decision="LEVEL",
        value=None,
        detail=f"v{moved.version} ({moved.kind}): level as of {last_day}, "
        f"was {pointer.level_as_of or 'unknown'}",
        run_id=context.run.run_id,
    )
    context.log.info("champion v%s: level as of %s", moved.version, last_day)
    return dg.MaterializeResult(
        metadata={
            "state": "updated",
            "champion_version": moved.version,
            "registry_version": registered,
            "mlflow_model_version": tracking.model_version_link(registered),
            "champion_kind": moved.kind,
            "level_as_of": moved.level_as_of,
            "previous_level_as_of": pointer.level_as_of,
            "level_rows": len(recent),
        }
    )
