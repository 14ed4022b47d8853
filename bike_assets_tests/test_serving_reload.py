"""Hot reload of the champion: swaps, failures that keep the old model, the background check and
the forecast window moving with the Paris day."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
from litestar.testing import TestClient

from bike_assets.ml.model import predict_counts
from bike_assets.ml.model_files import save_artifact
from bike_assets.ml.pointer import ChampionPointer, read_pointer, write_pointer
from bike_assets.resources.model_store import artifact_path
from bike_assets_tests.serving_fixtures import (
    API_KEY,
    COUNTERS,
    FIXED_NOW,
    metric,
    model_path,
    publish,
    serving_client,
    trained,
)
from bike_serving.champion import LoadedChampion

Client = TestClient[Any]
# Inside the cache window (2024-06-03 Paris) and far outside it: both paths are checked.
STAMPS = ["2024-06-03T08:00:00+02:00", "2024-06-03T18:00:00+02:00", "2025-01-15T08:00:00+01:00"]


def served_counts(client: Client) -> np.ndarray:
    records = [{"counter_id": COUNTERS[1], "timestamp": t} for t in STAMPS]
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    return np.array([p["predicted_count"] for p in response.json()["predictions"]])


def artifact_counts(version: str) -> np.ndarray:
    frame = pd.DataFrame(
        {"counter_id": [COUNTERS[1]] * len(STAMPS), "timestamp": pd.to_datetime(STAMPS, utc=True)}
    )
    return predict_counts(trained(version), frame)


def reload(client: Client) -> dict[str, Any]:
    response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def serving_version(client: Client) -> str:
    version: str = client.get("/champion").json()["version"]
    return version


def assert_still_v1(client: Client, failed: int) -> None:
    assert serving_version(client) == "1"
    np.testing.assert_allclose(served_counts(client), artifact_counts("1"), rtol=1e-12)
    assert metric(client, "bike_model_reloads_total", result="failed") == failed
    assert metric(client, "bike_model_reloads_total", result="success") == 1
    assert metric(client, "bike_model_info", version="1") == 1
    assert client.get("/health/ready").status_code == 200


def holder_of(client: Client) -> Any:
    return client.app.state.services.holder


def test_models_differ() -> None:
    """The premise of the swap tests: v1 and v2 predict different counts."""
    assert not np.allclose(artifact_counts("1"), artifact_counts("2"))


def test_new_version_is_swapped_in(tmp_path: Path) -> None:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as client:
        np.testing.assert_allclose(served_counts(client), artifact_counts("1"), rtol=1e-12)
        assert reload(client)["result"] == "unchanged"

        publish(tmp_path, trained("2"), "2")
        body = reload(client)
        assert body["result"] == "loaded"
        assert body["model"]["version"] == "2"
        assert "previously 1" in body["detail"]
        assert serving_version(client) == "2"
        np.testing.assert_allclose(served_counts(client), artifact_counts("2"), rtol=1e-12)
        assert metric(client, "bike_model_reloads_total", result="success") == 2
        assert metric(client, "bike_model_info", version="2") == 1
        assert metric(client, "bike_model_info", version="1") is None
        assert reload(client)["result"] == "unchanged"
        assert metric(client, "bike_model_reloads_total", result="success") == 2


def test_requests_keep_the_champion_they_took(tmp_path: Path) -> None:
    """The swap replaces the holder's reference; an object taken before it is left intact."""
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as client:
        holder = holder_of(client)
        taken: LoadedChampion = holder.require()
        publish(tmp_path, trained("2"), "2")
        assert reload(client)["result"] == "loaded"
        assert holder.require() is not taken
        assert holder.require().pointer.version == "2"
        assert taken.pointer.version == "1"
        codes = taken.codes_for([COUNTERS[1]] * 3, str)
        hours = np.array([pd.Timestamp(t).timestamp() // 3600 for t in STAMPS], dtype=np.int64)
        values, _ = taken.cache.lookup(codes[:2], hours[:2])
        np.testing.assert_allclose(values, artifact_counts("1")[:2], rtol=1e-12)
        with pytest.raises(ValueError, match="read-only"):
            taken.cache.values[0, 0] = 1.0


@pytest.mark.parametrize(
    "breakage",
    ["corrupt JSON", "not an object", "no model_uri", "pointer deleted"],
)
def test_broken_pointer_keeps_the_old_model(tmp_path: Path, breakage: str) -> None:
    publish(tmp_path, trained("1"), "1")
    pointer_file = tmp_path / "champion.json"
    with serving_client(tmp_path) as client:
        if breakage == "corrupt JSON":
            pointer_file.write_text('{"version": "2", "model_uri": ', encoding="utf-8")
        elif breakage == "not an object":
            pointer_file.write_text("[1, 2]", encoding="utf-8")
        elif breakage == "no model_uri":
            pointer_file.write_text('{"version": "2"}', encoding="utf-8")
        else:
            pointer_file.unlink()
        body = reload(client)
        assert body["result"] == "failed"
        assert "still serving version 1" in body["detail"]
        assert body["model"]["version"] == "1"
        assert_still_v1(client, failed=1)
        reload(client)  # every check of a broken pointer counts
        assert_still_v1(client, failed=2)


@pytest.mark.parametrize(
    "breakage", ["missing artifact", "garbage artifact", "not a pipeline", "changed after saving"]
)
def test_unloadable_artifact_keeps_the_old_model(tmp_path: Path, breakage: str) -> None:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as client:
        if breakage == "missing artifact":
            publish(tmp_path, None, "3")
        elif breakage == "changed after saving":
            publish(tmp_path, trained("2"), "3")
            model_path(tmp_path, "3").write_bytes(model_path(tmp_path, "1").read_bytes())
        else:
            # saved by the store with a correct digest: the loader itself must refuse it
            def write(path: Path) -> None:
                if breakage == "garbage artifact":
                    path.write_bytes(b"definitely not a model file")
                else:
                    skops.io.dump({"a": "dict"}, path)

            uri = save_artifact(str(tmp_path), artifact_path("3"), write)
            write_pointer(
                str(tmp_path / "champion.json"),
                ChampionPointer(version="3", model_uri=uri, trained_range={}, metrics={}),
            )
        body = reload(client)
        assert body["result"] == "failed"
        assert "version 3" in body["detail"]
        assert str(tmp_path) not in body["detail"]
        assert_still_v1(client, failed=1)

        publish(tmp_path, trained("2"), "2")  # a later good promotion is picked up
        assert reload(client)["result"] == "loaded"
        assert serving_version(client) == "2"


def test_pointer_metadata_change_needs_no_reload(tmp_path: Path) -> None:
    pointer = publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as client:
        before = holder_of(client).require()
        updated = read_pointer(str(tmp_path / "champion.json"))
        assert updated is not None
        write_pointer(
            str(tmp_path / "champion.json"),
            type(pointer)(**{**updated.__dict__, "metrics": {"rmse": 10.0, "r2": 0.95}}),
        )
        assert reload(client)["result"] == "unchanged"
        assert client.get("/champion").json()["metrics"] == {"rmse": 10.0, "r2": 0.95}
        assert holder_of(client).require().pipeline is before.pipeline  # not loaded again
        assert metric(client, "bike_model_reloads_total", result="success") == 1


def test_background_check_picks_up_a_new_champion(tmp_path: Path) -> None:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path, reload_interval_s=0.05) as client:
        assert serving_version(client) == "1"
        publish(tmp_path, trained("2"), "2")
        deadline = time.monotonic() + 15
        while serving_version(client) != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert serving_version(client) == "2"
        np.testing.assert_allclose(served_counts(client), artifact_counts("2"), rtol=1e-12)
        # a broken pointer is counted by the background check too, and the model stays
        (tmp_path / "champion.json").write_text("{", encoding="utf-8")
        while (metric(client, "bike_model_reloads_total", result="failed") or 0) < 1:
            assert time.monotonic() < deadline + 15
            time.sleep(0.05)
        assert serving_version(client) == "2"


def test_forecast_window_follows_the_paris_day(tmp_path: Path) -> None:
    publish(tmp_path, trained("1"), "1")
    now = [FIXED_NOW]
    with serving_client(tmp_path, clock=lambda: now[0]) as client:
        start = client.get("/champion").json()["forecast_cache"]["start"]
        assert start == "2024-06-03T00:00:00+02:00"
        assert reload(client)["result"] == "unchanged"  # same day: nothing to do

        now[0] = FIXED_NOW + timedelta(days=1)
        body = reload(client)
        assert body["result"] == "refreshed"
        cache = client.get("/champion").json()["forecast_cache"]
        assert cache["start"] == "2024-06-04T00:00:00+02:00"
        assert cache["end"] == "2024-06-06T00:00:00+02:00"
        before = metric(client, "bike_predictions_total", source="cache") or 0
        stamp = "2024-06-05T08:00:00+02:00"  # outside the first window, inside the new one
        response = client.post(
            "/predict", json={"records": [{"counter_id": COUNTERS[1], "timestamp": stamp}]}
        )
        assert metric(client, "bike_predictions_total", source="cache") == before + 1
        frame = pd.DataFrame(
            {
                "counter_id": [COUNTERS[1]],
                "timestamp": [datetime.fromisoformat(stamp).astimezone(UTC)],
            }
        )
        expected = predict_counts(trained("1"), frame)[0]
        assert response.json()["predictions"][0]["predicted_count"] == pytest.approx(expected)
        assert metric(client, "bike_model_reloads_total", result="success") == 1  # not a reload


def test_pointer_fields_this_version_does_not_know_are_ignored(tmp_path: Path) -> None:
    """A newer writer may add fields: the server keeps serving and takes what it knows."""
    publish(tmp_path, trained("1"), "1")
    pointer_file = tmp_path / "champion.json"
    with serving_client(tmp_path) as client:
        document = json.loads(pointer_file.read_text(encoding="utf-8"))
        document |= {"kind": "naive", "from_the_future": {"x": 1}}
        pointer_file.write_text(json.dumps(document), encoding="utf-8")
        assert reload(client)["result"] == "unchanged"
        assert client.get("/champion").json()["kind"] == "naive"
        assert_still_v1(client, failed=0)
