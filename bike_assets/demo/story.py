"""`bike demo`, step by step, printed as a story.

1. ingest the pre-drift weeks into raw_counts (one run for the range) and build `counters`;
2. run `retrain_job`: splits -> challenger -> double evaluation -> champion v1 (first DEPLOY);
3. ingest the last weeks, in which the synthetic city has a drift event (a level shift);
4. backfill the `predictions` issue days of those weeks (the forecast history), score the
   published forecasts (`champion_health`) and the drift (`drift_report`), evaluate
   `retrain_sensor` (P0-P4 decision matrix) and run the `retrain_job` it requests;
5. serve the champion with the Litestar app on 127.0.0.1 and print a forecast from it.

Everything lands in `BIKE_DATA_DIR` (default ./data); Dagster history in `DAGSTER_HOME`
(default ./data/dagster_home) so `dagster dev` shows these runs afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def _prepare_env(args: argparse.Namespace) -> tuple[date, date, date]:
    """Set the environment before bike_assets.definitions is imported (it reads it once)."""
    today = date.today() if args.today is None else date.fromisoformat(args.today)
    end = today - timedelta(days=1)  # yesterday is the last complete day
    start = end - timedelta(days=args.days - 1)
    drift = end - timedelta(days=args.drift_days_ago - 1)
    data_dir = Path(os.environ.setdefault("BIKE_DATA_DIR", str(Path("data").resolve())))
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(data_dir / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    repo_yaml = REPO_ROOT / "dagster.yaml"
    if repo_yaml.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(repo_yaml, home / "dagster.yaml")
    os.environ.setdefault("BIKE_SOURCE", "synthetic")
    os.environ.setdefault("BIKE_SYNTHETIC_DRIFT_DATE", drift.isoformat())
    os.environ.setdefault("BIKE_PARTITIONS_START", (start - timedelta(days=1)).isoformat())
    # The links the demo leaves in the Dagster UI open once the README's "Afterwards" servers
    # run: the model server on :8000 serves the reports, `mlflow ui` on :5000 the sqlite store.
    os.environ.setdefault("BIKE_REPORTS_URL", "http://127.0.0.1:8000/reports")
    os.environ.setdefault("MLFLOW_UI_URL", "http://127.0.0.1:5000")
    # MLflow sets its loggers' level from this when it is imported (INFO by default)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    return start, drift, end


def _title(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 76 - len(text)), flush=True)


def run(args: argparse.Namespace) -> int:
    start, drift, end = _prepare_env(args)
    # imported once the environment is set: bike_assets.definitions reads it at import
    import dagster as dg

    # raw_counts' single-run backfill_policy is a Dagster beta parameter, chosen knowingly: its
    # BetaWarning, raised as the asset is defined, is not part of the story
    warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy")
    from bike_assets.definitions import defs
    from bike_assets.demo.monitoring import monitor_and_maybe_retrain
    from bike_assets.demo.retrain import retrain
    from bike_assets.demo.runner import asset_value, range_tags, run_job
    from bike_assets.demo.serving import serve_and_forecast
    from bike_assets.settings import Settings

    settings = Settings.from_env()
    instance = dg.DagsterInstance.get()
    pre_drift_end = drift - timedelta(days=1)

    def ingest(first: date, last: date) -> Any:
        run_job(defs, instance, "ingest_job", tags=range_tags(first, last))
        return asset_value(defs, instance, run_job(defs, instance, "counters_job"), "counters")

    _title(
        f"1. ingest {start} .. {pre_drift_end} "
        f"(synthetic Paris, {settings.synthetic_counters} counters)"
    )
    counters = ingest(start, pre_drift_end)
    print(f"raw_counts: {int(counters['rows'].sum()):,} rows for {len(counters)} counters")

    _title("2. retrain_job: challenger vs champion vs seasonal naive, on unseen hours")
    retrain(defs, instance)

    _title(f"3. ingest {drift} .. {end}: the city changes on {drift} (drift event)")
    counters = ingest(drift, end)
    print(f"raw_counts: {int(counters['rows'].sum()):,} rows for {len(counters)} counters")

    _title("4. monitor: forecast history (backfill), champion_health, drift -> retrain_sensor")
    monitor_and_maybe_retrain(defs, instance, drift, end + timedelta(days=1))

    _title("5. serve the champion over HTTP and ask it for a forecast")
    serve_and_forecast(settings, hours=args.forecast_hours)
    print(
        "\nNext: `dagster dev -w workspace.yaml` to browse these runs "
        f"(DAGSTER_HOME={os.environ['DAGSTER_HOME']}),\n"
        "      `uvicorn bike_serving.app:app --port 8000` to keep the model server running "
        "(it also serves the reports the UI links to),\n"
        f"      `mlflow ui --backend-store-uri {settings.mlflow_tracking_uri} --port 5000` for "
        "the MLflow links."
    )
    return 0
