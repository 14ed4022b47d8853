"""What a trained challenger is, as the lifecycle's assets pass it to each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def hours_of(frame: pd.DataFrame) -> dict[str, str]:
    """[first hour, last hour + 1 h) of `frame`, UTC ISO strings."""
    return {
        "start": frame["timestamp"].min().isoformat(),
        "end": (frame["timestamp"].max() + pd.Timedelta(hours=1)).isoformat(),
    }


@dataclass(frozen=True)
class TrainedModel:
    """What downstream assets need to find and describe the challenger artifact."""

    version: str
    model_uri: str  # the served artifact
    mlflow_run_id: str
    params: dict[str, Any]
    target: str
    trained_range: dict[str, Any]  # the served artifact's hours: start, end, excluded windows
    train_rows: int
    evaluated_uri: str = ""  # the artifact evaluation_report scores
    evaluated_range: dict[str, Any] = field(default_factory=dict)
    served_rows: int = 0
    counters: list[str] = field(default_factory=list)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
