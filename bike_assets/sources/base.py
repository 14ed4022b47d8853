"""The contract every counts source implements, so ingestion code does not know which one runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

import dagster as dg
import pandas as pd


class SourceError(RuntimeError):
    """A window could not be fetched; the message names the window and the cause."""


@dataclass(frozen=True)
class CountsBatch:
    """Tidy rows of one half-open window `[start, end)` and what was dropped on the way."""

    frame: pd.DataFrame
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    requests: int = 0


class CountsSource(dg.ConfigurableResource, ABC):  # type: ignore[misc]
    """A source of hourly counts in the tidy schema (`bike_assets.schema`)."""

    @abstractmethod
    def fetch(self, start: datetime, end: datetime) -> CountsBatch:
        """Every count whose hour starts in `[start, end)` (tz-aware datetimes)."""
