"""Append-only audit tables of every automated or manual decision, in the warehouse.

`decision_log`: drift, evaluation and retraining decisions. `promotion_log`: what happened to
the champion pointer on each promotion attempt (DEPLOY / SKIP / REJECT / ROLLBACK / LEVEL), with
what is served afterwards (`served_kind`: model or naive).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from bike_assets.resources.warehouse import Warehouse

DECISION_LOG = "decision_log"
PROMOTION_LOG = "promotion_log"


def record_decision(
    warehouse: Warehouse, *, kind: str, decision: str, value: float | None, detail: str, run_id: str
) -> None:
    """Append one row to the audit table of every automated decision."""
    warehouse.append(
        DECISION_LOG,
        pd.DataFrame(
            [
                {
                    "decided_at": datetime.now(UTC),
                    "run_id": run_id,
                    "kind": kind,
                    "decision": decision,
                    "value": np.nan if value is None else float(value),
                    "detail": detail,
                }
            ]
        ),
    )


def log_promotion(
    warehouse: Warehouse,
    *,
    run_id: str,
    decision: str,
    reason: str,
    forced: bool,
    challenger_version: str | None,
    previous_version: str | None,
    champion_version: str | None,
    served_kind: str = "model",
) -> None:
    warehouse.append(
        PROMOTION_LOG,
        pd.DataFrame(
            [
                {
                    "decided_at": datetime.now(UTC),
                    "run_id": run_id,
                    "decision": decision,
                    "reason": reason,
                    "forced": forced,
                    "challenger_version": challenger_version or "",
                    "previous_champion_version": previous_version or "",
                    "champion_version": champion_version or "",
                    "served_kind": served_kind,
                }
            ]
        ),
    )
