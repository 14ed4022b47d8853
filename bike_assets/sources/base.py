"""The contract every counts source implements, so ingestion code does not know which one runs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
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


@dataclass(frozen=True)
class FetchProgress:
    """How far a fetch is: whole Paris days done (in day order) and the rows they held."""

    days_done: int
    days_total: int
    rows: int


# Called by `fetch` as days complete (from the calling thread); a long backfill reports through it.
ProgressCallback = Callable[[FetchProgress], None]


class CountsSource(dg.ConfigurableResource, ABC):  # type: ignore[misc]
    """A source of hourly counts in the tidy schema (`bike_assets.schema`)."""

    @abstractmethod
    def fetch(
        self, start: datetime, end: datetime, progress: ProgressCallback | None = None
    ) -> CountsBatch:
        """Every count whose hour starts in `[start, end)` (tz-aware datetimes).

        `progress`, when given, is called as days complete; its last call, after the last day,
        has `days_done == days_total`.
        """
