"""Moving the champion pointer: one way to read it tolerantly, one way to promote.

`promote` is used by the `champion` asset (DEPLOY, naive served, forced promotion), the
rollback job and the daily level update, so every move writes the pointer atomically (see
`ml/pointer.py`), sets MLflow's `champion` alias, writes `promotion_log` and alerts the same way.
"""

from __future__ import annotations

import dataclasses

from bike_assets.lifecycle.audit import log_promotion
from bike_assets.ml.pointer import ChampionPointer
from bike_assets.resources.alerts import DiscordResource
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.tracking import MlflowTracking
from bike_assets.resources.warehouse import Warehouse


def read_champion(store: ChampionStore) -> tuple[ChampionPointer | None, str | None]:
    """(pointer, None), (None, None) when there is none, or (None, why) when it is broken: a
    broken pointer is replaced by the next promotion, never fatal to the one that replaces it."""
    try:
        return store.read(), None
    except Exception as exc:  # corrupt JSON, missing fields, unreadable object: all mean broken
        return None, f"{type(exc).__name__}: {exc}"


def promote(
    pointer: ChampionPointer,
    *,
    current: ChampionPointer | None,
    decision: str,
    reason: str,
    run_id: str,
    forced: bool,
    challenger_version: str | None,
    store: ChampionStore,
    tracking: MlflowTracking,
    warehouse: Warehouse,
    alerts: DiscordResource,
    alert_level: str = "info",
    set_alias: bool = True,
) -> None:
    """Make `pointer` the champion, then record and announce it. MLflow's `champion` alias
    follows: to `pointer.registry_version` when it names a level update, else `version`."""
    pointer = dataclasses.replace(
        pointer, registry_version=pointer.registry_version or pointer.version
    )
    store.write(pointer)
    if set_alias:
        tracking.set_champion(pointer.registry_version)
    log_promotion(
        warehouse,
        run_id=run_id,
        decision=decision,
        reason=reason,
        forced=forced,
        challenger_version=challenger_version,
        previous_version=current.version if current else None,
        champion_version=pointer.version,
        served_kind=pointer.kind,
    )
    alerts.send(
        f"Champion {decision}: v{pointer.version} ({pointer.kind})",
        reason,
        level=alert_level,
        dedup_key=f"promotion:{run_id}:{pointer.version}",
    )
