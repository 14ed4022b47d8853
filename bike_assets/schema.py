"""The one tidy schema every source produces and the warehouse stores.

| column            | dtype                      | meaning                                        |
|-------------------|----------------------------|------------------------------------------------|
| counter_id        | string                     | `id_compteur`, `<site>-<channel>`: the key      |
| counter_name      | string                     | `nom_compteur`                                 |
| site_id           | string (nullable)          | `id`                                           |
| site_name         | string (nullable)          | `name`                                         |
| timestamp         | datetime64[ns, UTC]        | start of the counted hour                      |
| count             | int64, >= 0                | bikes in that hour (`sum_counts`)              |
| lat, lon          | float64 (nullable)         | `coordinates`                                  |
| installation_date | string YYYY-MM-DD (nullable)| `installation_date`                           |

One row per `(counter_id, timestamp)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

TIDY_DTYPES: dict[str, str] = {
    "counter_id": "string",
    "counter_name": "string",
    "site_id": "string",
    "site_name": "string",
    "timestamp": "datetime64[ns, UTC]",
    "count": "int64",
    "lat": "float64",
    "lon": "float64",
    "installation_date": "string",
}
TIDY_COLUMNS: list[str] = list(TIDY_DTYPES)
KEY_COLUMNS: list[str] = ["counter_id", "timestamp"]
# The meaning column of the table above, as data: the Dagster catalog (`bike_assets/catalog.py`)
# shows it per column. This module stays free of Dagster: bike_serving may import it.
TIDY_DESCRIPTIONS: dict[str, str] = {
    "counter_id": "`id_compteur`, `<site>-<channel>`: the key with `timestamp`",
    "counter_name": "`nom_compteur`",
    "site_id": "`id` (nullable)",
    "site_name": "`name` (nullable)",
    "timestamp": "start of the counted hour (UTC)",
    "count": "bikes in that hour (`sum_counts`), >= 0",
    "lat": "latitude from `coordinates` (nullable)",
    "lon": "longitude from `coordinates` (nullable)",
    "installation_date": "`installation_date`, YYYY-MM-DD (nullable)",
}


def empty_tidy() -> pd.DataFrame:
    return coerce_tidy(pd.DataFrame({c: [] for c in TIDY_COLUMNS}))


def coerce_tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast a frame that already has the tidy columns to the tidy dtypes, sorted by key."""
    out = frame.loc[:, TIDY_COLUMNS].copy()
    ts = pd.to_datetime(out["timestamp"], utc=True)
    out["timestamp"] = ts.dt.as_unit("ns") if hasattr(ts.dt, "as_unit") else ts
    for col, dtype in TIDY_DTYPES.items():
        if col != "timestamp":
            out[col] = out[col].astype(dtype)  # type: ignore[call-overload]
    return out.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Normalized:
    """Tidy rows plus what had to be dropped on the way, for metadata."""

    frame: pd.DataFrame
    dropped: int
    drop_reasons: dict[str, int]


def normalize_records(records: Iterable[Mapping[str, Any]]) -> Normalized:
    """Turn Explore v2.1 records (`comptage-velo-donnees-compteurs`) into tidy rows.

    Records without a usable counter id, timestamp or count are dropped and counted by reason;
    duplicates of a `(counter_id, timestamp)` keep the last record seen (the API's correction).
    Vectorised: a day is ~2,400 records and a backfill ~1M.
    """
    recs = [r for r in records]
    reasons: dict[str, int] = {}
    objects = [r for r in recs if isinstance(r, Mapping)]
    if len(objects) < len(recs):
        reasons["not_an_object"] = len(recs) - len(objects)
    if not objects:
        return Normalized(frame=empty_tidy(), dropped=sum(reasons.values()), drop_reasons=reasons)

    raw = pd.DataFrame.from_records(
        [
            (
                r.get("id_compteur"),
                r.get("nom_compteur"),
                r.get("id"),
                r.get("name"),
                r.get("date"),
                r.get("sum_counts"),
                r.get("coordinates"),
                r.get("installation_date"),
            )
            for r in objects
        ],
        columns=[
            "counter_id",
            "counter_name",
            "site_id",
            "site_name",
            "date",
            "sum_counts",
            "coordinates",
            "installation_date",
        ],
    )

    def keep(mask: pd.Series, reason: str) -> None:
        nonlocal raw
        bad = int((~mask).sum())
        if bad:
            reasons[reason] = reasons.get(reason, 0) + bad
            raw = raw.loc[mask]

    counter_id = _clean_text(raw["counter_id"])
    raw = raw.assign(counter_id=counter_id)
    keep(counter_id.notna(), "missing_counter_id")

    count = pd.to_numeric(
        raw["sum_counts"].where(raw["sum_counts"].map(_is_number)), errors="coerce"
    )
    raw = raw.assign(count=count)
    keep(count.notna() & (count == count.round()), "bad_count")
    keep(raw["count"] >= 0, "negative_count")

    ts = pd.to_datetime(
        raw["date"].where(raw["date"].map(lambda v: isinstance(v, str))),
        utc=True,
        errors="coerce",
        format="ISO8601",
    )
    raw = raw.assign(timestamp=ts)
    keep(ts.notna(), "bad_timestamp")

    coords = raw["coordinates"]
    frame = pd.DataFrame(
        {
            "counter_id": raw["counter_id"],
            "counter_name": _clean_text(raw["counter_name"]).fillna(raw["counter_id"]),
            "site_id": _clean_text(raw["site_id"]),
            "site_name": _clean_text(raw["site_name"]),
            "timestamp": raw["timestamp"],
            "count": raw["count"].astype("int64"),
            "lat": coords.map(lambda c: _coord(c, "lat")),
            "lon": coords.map(lambda c: _coord(c, "lon")),
            "installation_date": _clean_text(raw["installation_date"]),
        }
    )
    before = len(frame)
    frame = frame.drop_duplicates(KEY_COLUMNS, keep="last")
    if len(frame) < before:
        reasons["duplicate_key"] = before - len(frame)
    frame = coerce_tidy(frame)
    return Normalized(frame=frame, dropped=sum(reasons.values()), drop_reasons=reasons)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _clean_text(series: pd.Series) -> pd.Series:
    text = series.map(lambda v: None if v is None else str(v).strip() or None)
    return text.astype("string")


def _coord(value: Any, key: str) -> float:
    if isinstance(value, Mapping):
        try:
            return float(value.get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return float("nan")
    return float("nan")


def schema_problems(frame: pd.DataFrame) -> list[str]:
    """What is wrong with a frame that should be tidy (empty list when it is)."""
    problems: list[str] = []
    missing = [c for c in TIDY_COLUMNS if c not in frame.columns]
    if missing:
        problems.append(f"missing columns: {missing}")
    extra = [c for c in frame.columns if c not in TIDY_DTYPES]
    if extra:
        problems.append(f"unexpected columns: {extra}")
    for col, dtype in TIDY_DTYPES.items():
        if col in frame.columns and str(frame[col].dtype) != dtype:
            problems.append(f"{col} has dtype {frame[col].dtype}, expected {dtype}")
    return problems
