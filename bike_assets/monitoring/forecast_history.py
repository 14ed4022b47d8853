"""The forecast history: what was published on each issue day, and how it is scored.

Contract of a stored forecast (one row of the `predictions` table):

* `issued_at` is the start of the Paris day D the forecast was issued on (in UTC); the forecast
  covers the Paris days D .. D+horizon-1 (23 or 25 hours on DST days) for every counter that
  the model knows and that reported in the 7 Paris days before D.
* Counts are read only before D (`data_until` <= `issued_at`: the hour after the last count the
  issue saw). The model is the champion being served when the partition was materialized: its
  `model_version`, `model_kind` ("model" or "naive"), `model_uri` and `model_level_as_of` (the
  daily level update changes these two, not the version) are stored in every row, with
  `model_seen_until` (the first hour the artifact has NOT seen, in training or in its level) and
  `created_at`, so a backfilled issue (created long after D) is visible as one and its hours the
  model had already seen are never scored.

Scoring (`published_forecasts`): for each (counter, hour), the most recent forecast issued on
or before that hour's Paris day by the given model version (lead 0 to 23 hours on a normal
day, longer when issues are missing), never for an hour before that row's `model_seen_until`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from bike_assets.ml.model import known_counters, predict_counts
from bike_assets.ml.paris_days import paris_day_start
from bike_assets.ml.pointer import ChampionPointer

FORECAST_COLUMNS = [
    "issued_at",
    "counter_id",
    "timestamp",
    "predicted_count",
    "lead_hours",
    "data_until",
    "model_version",
    "model_kind",
    "model_uri",
    "model_level_as_of",
    "model_seen_until",
    "created_at",
]
LOOKBACK_DAYS = 7  # a counter silent for a week is not forecast (removed or broken)


@dataclass(frozen=True)
class ForecastModel:
    """The champion as served when a forecast is issued."""

    version: str
    uri: str
    kind: str = "model"
    level_as_of: str = ""  # the last Paris day its recent level has seen ("" if never updated)
    seen_until: pd.Timestamp | None = None  # the first hour it has not seen (UTC)

    @classmethod
    def from_pointer(cls, pointer: ChampionPointer) -> ForecastModel:
        seen: list[pd.Timestamp] = []
        end = pointer.trained_range.get("end")  # exclusive: [first hour, last hour + 1 h)
        if end:
            seen.append(pd.Timestamp(end).tz_convert("UTC"))
        if pointer.level_as_of:
            seen.append(paris_day_start(pointer.level_as_of, 1))
        return cls(
            version=pointer.version,
            uri=pointer.model_uri,
            kind=pointer.kind,
            level_as_of=pointer.level_as_of,
            seen_until=max(seen) if seen else None,
        )


def issue_forecast(
    pipeline: Pipeline,
    model: ForecastModel,
    day: str,
    counts_before: pd.DataFrame,
    horizon_days: int = 7,
    created_at: datetime | None = None,
) -> pd.DataFrame:
    """The forecast issued on Paris day `day`, in `FORECAST_COLUMNS`.

    `counts_before` may hold any counts; only those in the `LOOKBACK_DAYS` Paris days before
    `day` are used (which counters reported, and when the last count was), so the same call
    made today for a past day gives what that day would have issued with this model.
    """
    issued_at = paris_day_start(day)
    stamps = counts_before["timestamp"]
    seen = counts_before[(stamps >= paris_day_start(day, -LOOKBACK_DAYS)) & (stamps < issued_at)]
    active = sorted(set(seen["counter_id"].astype(str)) & set(known_counters(pipeline)))
    if not active:
        return empty_forecasts()
    hours = pd.date_range(issued_at, paris_day_start(day, horizon_days), freq="h", inclusive="left")
    frame = pd.DataFrame(
        {
            "counter_id": np.repeat(np.asarray(active, dtype=object), len(hours)),
            "timestamp": np.tile(hours, len(active)),
        }
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["predicted_count"] = predict_counts(pipeline, frame)
    frame["issued_at"] = issued_at
    frame["lead_hours"] = ((frame["timestamp"] - issued_at) / pd.Timedelta(hours=1)).astype("int64")
    frame["data_until"] = seen["timestamp"].max() + pd.Timedelta(hours=1)
    frame["model_version"] = model.version
    frame["model_kind"] = model.kind
    frame["model_uri"] = model.uri
    frame["model_level_as_of"] = model.level_as_of
    frame["model_seen_until"] = model.seen_until if model.seen_until is not None else pd.NaT
    frame["created_at"] = pd.Timestamp(created_at or datetime.now(UTC))
    return normalize_forecasts(frame)


def empty_forecasts() -> pd.DataFrame:
    return normalize_forecasts(pd.DataFrame({c: [] for c in FORECAST_COLUMNS}))


def normalize_forecasts(frame: pd.DataFrame) -> pd.DataFrame:
    """The stored dtypes, whatever the storage handed back (DuckDB and BigQuery return their
    own timestamp zones and object strings; dagster-gcp stores column names upper-case)."""
    out = frame.rename(columns=str.lower).loc[:, FORECAST_COLUMNS].copy()
    for column in ("issued_at", "timestamp", "data_until", "model_seen_until", "created_at"):
        out[column] = pd.to_datetime(out[column], utc=True)
    for column in ("counter_id", "model_version", "model_kind", "model_uri", "model_level_as_of"):
        out[column] = out[column].astype(str)
    out["predicted_count"] = out["predicted_count"].astype("float64")
    out["lead_hours"] = out["lead_hours"].astype("int64")
    return out.reset_index(drop=True)


def published_forecasts(
    forecasts: pd.DataFrame, version: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """For each (counter, hour) in [start, end): the most recent forecast by model `version`
    issued on or before that hour's Paris day, excluding hours inside the training data of the
    model that issued it (module docstring)."""
    rows = normalize_forecasts(forecasts) if len(forecasts) else empty_forecasts()
    stamps = rows["timestamp"]
    seen_until = rows["model_seen_until"]
    keep = (
        (rows["model_version"] == str(version))
        & (stamps >= start)
        & (stamps < end)
        # by construction an issue starts at its own day; the guard keeps a hand-written row
        # issued after its hour from counting as a forecast
        & (rows["issued_at"] <= stamps)
        & (seen_until.isna() | (stamps >= seen_until))
    )
    chosen = rows.loc[keep].sort_values("issued_at", kind="stable")
    chosen = chosen.drop_duplicates(["counter_id", "timestamp"], keep="last")
    return chosen.sort_values(["counter_id", "timestamp"]).reset_index(drop=True)
