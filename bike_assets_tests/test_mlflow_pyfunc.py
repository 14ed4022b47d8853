"""`mlflow.pyfunc.load_model("models:/bike-counts@champion")` in a fresh Python process, with the
project not importable (its code comes from the model's `code_paths`) and pickle loading
forbidden, predicts what the serving app's `/predict` answers for the same records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from bike_assets.resources.tracking import MlflowTracking
from bike_assets_tests.serving_fixtures import COUNTERS, publish, serving_client, trained

REPO = Path(__file__).resolve().parents[1]

# The app's forecast cache covers 2024-06-03 and -04 (Paris days), so the first three stamps are
# answered from the cache and the others by the pipeline: both paths of /predict are compared.
TIMESTAMPS = [
    "2024-06-03T08:00:00",  # naive: Paris time
    "2024-06-03T08:45:12+02:00",  # inside an hour
    "2024-06-04T06:30:00Z",
    "2024-06-10T18:00:00+02:00",
    "2024-12-25T09:00:00",  # a holiday, winter time
    "2024-10-27T02:30:00",  # ambiguous Paris time (the clocks go back)
    "2024-03-31T02:30:00",  # a Paris time that does not exist (the clocks go forward)
    "2024-07-14T12:00:00+05:30",  # an offset that is not a whole hour
    "2025-01-01T00:00:00+00:00",
]

FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.util, json, sys

    # The venv has this project installed in editable mode; a fresh environment would not:
    # drop its finder so that only the model's code_paths can provide bike_assets.
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(f)]
    assert importlib.util.find_spec("bike_assets") is None, "the project is importable"

    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/bike-counts@champion")
    values = model.predict(pd.DataFrame(json.loads(sys.argv[1])))
    import bike_assets

    print(json.dumps({
        "values": [float(v) for v in values],
        "bike_assets": bike_assets.__file__,
        "serving_importable": importlib.util.find_spec("bike_serving") is not None,
    }))
    """
)


def fresh_process_env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    # The model is code + a skops file: loading it must not need pickle.
    env["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    return env


def test_the_champion_loads_in_a_fresh_process_and_predicts_what_the_api_answers(
    tmp_path: Path,
) -> None:
    pipeline = trained("1")
    tracking = MlflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=str(tmp_path / "mlartifacts"),
    )
    logged = tracking.log_training(
        pipeline,
        params={"max_iter": 30},
        metrics={},
        tags={},
        run_name="retrain",
        dagster_run_id="dagster-run-1",
    )
    tracking.set_champion(logged.version)
    data_dir = tmp_path / "data"
    publish(data_dir, pipeline, logged.version)
    records = [{"counter_id": c, "timestamp": t} for c in COUNTERS for t in TIMESTAMPS]

    with serving_client(data_dir, max_records=len(records)) as client:
        response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    api = np.array([p["predicted_count"] for p in response.json()["predictions"]])

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(records)],
        cwd=elsewhere,
        env=fresh_process_env(tracking.tracking_uri),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    assert not Path(out["bike_assets"]).is_relative_to(REPO)  # from the model's code_paths
    assert not out["serving_importable"]  # only bike_assets' model code travels
    assert "pickle" not in done.stderr.lower()
    assert len(out["values"]) == len(records)
    assert np.unique(api).size > len(TIMESTAMPS)  # the records really differ
    np.testing.assert_allclose(out["values"], api, rtol=1e-9, atol=0)
