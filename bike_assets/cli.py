"""`bike demo`: the whole platform offline, end to end, on the synthetic city.

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
import logging
import os
import shutil
import sys
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

# Runs still log everything to DAGSTER_HOME (visible in `dagster dev`); the terminal gets the story.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


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
    repo_yaml = Path(__file__).resolve().parent.parent / "dagster.yaml"
    if repo_yaml.exists() and not (home / "dagster.yaml").exists():
        shutil.copy(repo_yaml, home / "dagster.yaml")
    os.environ.setdefault("BIKE_SOURCE", "synthetic")
    os.environ.setdefault("BIKE_SYNTHETIC_DRIFT_DATE", drift.isoformat())
    os.environ.setdefault("BIKE_PARTITIONS_START", (start - timedelta(days=1)).isoformat())
    return start, drift, end


def _title(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 76 - len(text)), flush=True)


def _run_job(defs: Any, instance: Any, name: str, **kwargs: Any) -> Any:
    result = defs.resolve_job_def(name).execute_in_process(
        instance=instance, raise_on_error=False, run_config=QUIET, **kwargs
    )
    if not result.success:
        failures = [e.message for e in result.all_events if e.is_failure]
        raise SystemExit(f"{name} failed: {failures[-1] if failures else 'see dagster logs'}")
    return result


def retrain(defs: Any, instance: Any, **kwargs: Any) -> None:
    """Run retrain_job and print its evaluation and what is served afterwards. A REJECT (the
    challenger does not beat the seasonal naive) or a SKIP is an outcome, not a failure."""
    _run_job(defs, instance, "retrain_job", **kwargs)
    report = _print_evaluation(defs)
    pointer = defs.load_asset_value("champion")
    if pointer:
        print(
            f"serving: v{pointer['version']} ({pointer.get('kind', 'model')}), "
            f"{report.get('serve', '?')} after this decision"
        )
    else:
        print("serving: nothing yet")


def _ingest(defs: Any, instance: Any, first: date, last: date) -> None:
    _run_job(
        defs,
        instance,
        "ingest_job",
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
    )
    _run_job(defs, instance, "counters_job")


def _print_evaluation(defs: Any) -> dict[str, Any]:
    from bike_assets.lifecycle.evaluate import scores_table

    report: dict[str, Any] = defs.load_asset_value("evaluation_report")
    print(scores_table(report))
    print(f"\ndecision: {report['decision']} - {report['reason']}")
    return report


def demo(args: argparse.Namespace) -> int:
    start, drift, end = _prepare_env(args)
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import dagster as dg

    from bike_assets.definitions import defs
    from bike_assets.settings import Settings

    settings = Settings.from_env()
    instance = dg.DagsterInstance.get()
    pre_drift_end = drift - timedelta(days=1)

    _title(
        f"1. ingest {start} .. {pre_drift_end} "
        f"(synthetic Paris, {settings.synthetic_counters} counters)"
    )
    _ingest(defs, instance, start, pre_drift_end)
    counters: Any = defs.load_asset_value("counters")
    print(f"raw_counts: {int(counters['rows'].sum()):,} rows for {len(counters)} counters")

    _title("2. retrain_job: challenger vs champion vs seasonal naive, on unseen hours")
    retrain(defs, instance)

    _title(f"3. ingest {drift} .. {end}: the city changes on {drift} (drift event)")
    _ingest(defs, instance, drift, end)

    _title("4. monitor: forecast history (backfill), champion_health, drift -> retrain_sensor")
    from bike_assets.demo_monitoring import monitor_and_maybe_retrain

    monitor_and_maybe_retrain(defs, instance, drift, end + timedelta(days=1))

    _title("5. serve the champion over HTTP and ask it for a forecast")
    from bike_assets.demo_serving import serve_and_forecast

    serve_and_forecast(settings, hours=args.forecast_hours)
    print(
        "\nNext: `dagster dev -w workspace.yaml` to browse these runs "
        f"(DAGSTER_HOME={os.environ['DAGSTER_HOME']}),\n"
        "      `uvicorn bike_serving.app:app` to keep the model server running."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bike", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the platform end to end offline on the synthetic city")
    p.add_argument("--days", type=int, default=105, help="days of counts to ingest (default 105)")
    p.add_argument(
        "--drift-days-ago",
        type=int,
        default=35,
        help="the drift event starts this many days before today (default 35)",
    )
    p.add_argument("--today", default=None, help="pretend today is this date (YYYY-MM-DD)")
    p.add_argument("--forecast-hours", type=int, default=24)
    p.add_argument("--fresh", action="store_true", help="delete BIKE_DATA_DIR first")
    s = sub.add_parser("stack", help="the production topology without Docker: up | status | down")
    s.add_argument("stack_args", nargs=argparse.REMAINDER, help="up [--only ...] | status | down")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args)
    if args.command == "stack":
        from bike_assets.stack import main as stack_main

        return stack_main(args.stack_args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
