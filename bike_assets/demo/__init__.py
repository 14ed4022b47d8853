"""`bike demo`: the whole platform offline, end to end, on the synthetic city.

It sits on top of the code location: it imports `bike_assets.definitions` and `bike_serving`,
and nothing imports it (an import-linter contract in pyproject.toml). `bike_assets.cli` only
parses the arguments and calls `story.run`.

- `story.py`: the five steps, printed as a story;
- `runner.py`: the one way the demo runs a job (`run_job`): no Dagster log lines on the
  terminal, one progress line per step instead (`progress.py`, a Dagster logger);
- `retrain.py`: `retrain_job` and the evaluation table it ends with;
- `monitoring.py`: step 4 (forecast history, champion_health, drift, retrain_sensor);
- `serving.py`: step 5 (the Litestar app on 127.0.0.1, asked for a forecast).
"""
