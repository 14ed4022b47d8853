"""The daily level update: the champion follows the city between retrains."""

from __future__ import annotations

from datetime import date, timedelta

import mlflow
import numpy as np
import pandas as pd
import pytest

from bike_assets.lifecycle.audit import DECISION_LOG
from bike_assets.ml.level_update import refresh_level
from bike_assets.ml.model import build_pipeline, fit_pipeline, known_counters, predict_counts
from bike_assets.ml.naive import fit_naive
from bike_assets.ml.pointer import read_pointer
from bike_assets.resources.model_store import ModelStore
from bike_assets.resources.warehouse import DuckDBWarehouse
from bike_assets.settings import REGISTERED_MODEL_NAME
from bike_assets_tests.conftest import Platform
from bike_assets_tests.test_model import COUNTERS, FAST, START, counts, future_rows


def shifted(weeks: int, factor: float) -> pd.DataFrame:
    """`weeks` more weeks after the 10-week history, every count multiplied by `factor`."""
    later = counts(weeks=weeks, start=START + pd.Timedelta(weeks=10), seed=1)
    later["count"] = np.round(later["count"] * factor)
    return later


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return counts(weeks=10)


def test_a_model_follows_a_level_shift_without_retraining(history: pd.DataFrame) -> None:
    model = fit_pipeline(build_pipeline(FAST), history, FAST)
    recent = shifted(weeks=4, factor=2.0)
    updated = refresh_level(model, recent)
    future = future_rows(recent, hours=7 * 24)
    before, after = predict_counts(model, future), predict_counts(updated, future)
    truth = shifted(weeks=5, factor=2.0).tail(len(future))  # not used to fit: the next week
    assert after.mean() > 1.3 * before.mean()  # the city doubled; the update saw it
    # what the trees learned is kept: same fitted estimator object, same counters
    assert updated.named_steps["model"] is model.named_steps["model"]
    assert known_counters(updated) == known_counters(model) == sorted(COUNTERS)
    # the original artifact is untouched (the served one is replaced, not mutated)
    assert np.array_equal(predict_counts(model, future), before)
    assert truth["count"].mean() > 0


def test_a_naive_champion_takes_the_latest_weeks_and_keeps_its_counters(
    history: pd.DataFrame,
) -> None:
    naive = fit_naive(history)
    recent = shifted(weeks=4, factor=3.0)
    recent = recent[recent["counter_id"] != COUNTERS[0]]  # a counter silent lately
    updated = refresh_level(naive, recent)
    assert known_counters(updated) == sorted(COUNTERS)
    future = future_rows(recent, hours=24)
    others = future["counter_id"] != COUNTERS[0]
    ratio = (
        predict_counts(updated, future)[others].sum() / predict_counts(naive, future)[others].sum()
    )
    assert 2.5 < ratio < 3.5


def test_a_level_update_needs_the_weeks_of_its_window(history: pd.DataFrame) -> None:
    model = fit_pipeline(build_pipeline(FAST), history, FAST)
    with pytest.raises(ValueError, match="4 weeks"):
        refresh_level(model, shifted(weeks=1, factor=1.0))


def test_champion_level_moves_the_pointer_of_the_same_version(platform: Platform) -> None:
    first, last = date(2024, 1, 8), date(2024, 2, 8)
    platform.ingest(first, last)
    platform.retrain()
    promoted = read_pointer(platform.settings.champion_pointer_uri)
    assert promoted is not None and promoted.level_as_of == last.isoformat()

    unchanged = platform.defs.get_implicit_global_asset_job_def()
    result = platform.run(unchanged.name, asset_selection=[dg_key("champion_level")])
    assert result.success
    assert read_pointer(platform.settings.champion_pointer_uri) == promoted  # up to date

    platform.ingest(last + timedelta(days=1), last + timedelta(days=3))
    platform.run(unchanged.name, asset_selection=[dg_key("champion_level")])
    moved = read_pointer(platform.settings.champion_pointer_uri)
    assert moved is not None
    assert moved.version == promoted.version and moved.kind == promoted.kind
    assert moved.level_as_of == (last + timedelta(days=3)).isoformat()
    assert moved.model_uri != promoted.model_uri
    assert moved.trained_range == promoted.trained_range  # the trees saw no new hour
    log = DuckDBWarehouse(database=str(platform.settings.warehouse_path)).read(DECISION_LOG)
    assert log.loc[log["kind"] == "level_update", "decision"].tolist() == ["LEVEL"]

    # MLflow's `champion` alias follows: a version of its own, predicting what is served
    client = mlflow.MlflowClient(platform.settings.mlflow_tracking_uri)
    alias = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, "champion")
    assert promoted.registry_version == promoted.version
    assert str(alias.version) == moved.registry_version != promoted.version
    assert alias.tags["level_update_of"] == promoted.version
    assert alias.tags["level_as_of"] == moved.level_as_of
    registered = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}@champion")
    served = ModelStore(root=platform.settings.model_store_root).load(moved.model_uri)
    stamps = pd.date_range(pd.Timestamp(last, tz="UTC"), periods=48, freq="h")
    counters = known_counters(served)
    rows = pd.DataFrame(
        {
            "counter_id": np.repeat(np.array(counters, dtype=object), len(stamps)),
            "timestamp": np.tile(stamps, len(counters)),
        }
    )
    records = rows.assign(timestamp=[t.isoformat() for t in rows["timestamp"]])
    np.testing.assert_allclose(
        np.asarray(registered.predict(records), dtype=float),
        predict_counts(served, rows),
        rtol=1e-9,
    )


def dg_key(name: str):  # type: ignore[no-untyped-def]
    import dagster as dg

    return dg.AssetKey(name)
