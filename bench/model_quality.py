"""Model quality benchmark on the real Paris counts: ours vs the original system vs naive.

    .venv/bin/python bench/model_quality.py --data PATH \
        [--train-end 2021-07-09 --test-start 2021-07-10 --test-end 2021-08-09] [--no-previous] \
        [--study]

Dates are Paris-local days, all inclusive. Train = every hour up to the end of `--train-end`;
test = every hour of `--test-start` .. `--test-end`. The test hours are never seen by any fit
(the naive baseline also uses only the 4 weeks before `--test-start`).

In one run, each model is fitted in its own fresh child process (spawn), one after the other:
- "ours": `fit_with_target_selection(train, ModelParams())` (the default model, including its
  time-based target selection and refit, i.e. what the training asset runs);
- "previous default": the pipeline and selection of the project before this benchmark's changes
  (CalendarFeatures + HistGradientBoosting, Poisson vs log1p on the last 7 days), for before/after
  figures; `--no-previous` skips it;
- "original": the original system's model, RandomForest(n_estimators=50, max_depth=20) on its
  features (weekday one-hot, day of month, year, hour sin/cos, month sin/cos, counter one-hot),
  re-implemented here as a separate sklearn Pipeline (Paris-local calendar);
- "naive": the seasonal-naive baseline (`bike_assets.ml.naive.seasonal_naive`).

What is measured, in the child, for each model:
- fit s: wall time of the fit call alone (data already loaded);
- peak RSS: `getrusage(RUSAGE_SELF).ru_maxrss` of the child after the fit: the high-water mark of
  the whole process (interpreter + libraries + the training frame + the fit), not the fit alone;
- fit +RSS: that peak minus the resident size just before the fit (what the fit added on top);
- predict ms: median wall time of `predict_counts` on 1 row and on 16,800 rows (the test rows
  cycled), after one warm-up call, with ONE OpenMP thread, as the serving app calls the model
  (on a shared CPU, OpenMP threads waiting for each other made these times vary 10x);
- artifact MB: size of the `joblib` dump of the fitted pipeline.

Threads of the fits: each model's own policy. Ours: `ModelParams.fit_threads` (1 by default);
the previous default and the original: all CPUs (OpenMP for HistGradientBoosting, joblib
n_jobs=-1 for the forest), as they shipped.

`--study` adds the validation study that chose the defaults: folds of 4 weeks inside the
training period only (never the test window), each variant = the default with one change.

Prints a Markdown table and writes it to bench/results/model_quality.md with the date and the
machine. Timings are wall-clock and depend on the other load of the machine (the load average
before and after the run is written next to them).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bike_assets.ml.features import (  # noqa: E402
    COUNTER_FEATURE,
    INPUT_COLUMNS,
    CalendarFeatures,
    to_utc,
)
from bike_assets.ml.metrics import score  # noqa: E402
from bike_assets.ml.model import (  # noqa: E402
    ModelParams,
    build_pipeline,
    fit_pipeline,
    fit_with_target_selection,
    predict_counts,
)
from bike_assets.ml.naive import seasonal_naive  # noqa: E402
from bike_assets.settings import PARIS_TZ  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "model_quality.md"
API_COLUMNS = {"id_compteur": "counter_id", "sum_counts": "count", "date": "timestamp"}
BATCH_ROWS = 16_800
TARGET_FIT_S = 15.0
TARGET_PEAK_MB = 1024.0
TARGET_SPEEDUP = 5.0
TARGET_R2 = 0.90
TARGET_GAIN_OVER_NAIVE = 0.08
MODELS = ("ours", "previous default", "original", "naive")


# --- data ------------------------------------------------------------------------------------
def load_counts(path: str) -> pd.DataFrame:
    """The parquet in the API's field names -> the project's tidy columns, sorted by time."""
    raw = pd.read_parquet(path, columns=list(API_COLUMNS))
    frame = raw.rename(columns=API_COLUMNS)
    frame["counter_id"] = frame["counter_id"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["count"] = frame["count"].astype(np.float64)
    return frame.sort_values(["timestamp", "counter_id"], kind="stable").reset_index(drop=True)


def paris_day_start(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz=PARIS_TZ).tz_convert("UTC")


def split(
    frame: pd.DataFrame, train_end: str, test_start: str, test_end: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train: every hour before the day after `train_end`; test: `test_start` .. `test_end`."""
    train_stop = paris_day_start(train_end) + pd.Timedelta(days=1)
    test_from = paris_day_start(test_start)
    test_stop = paris_day_start(test_end) + pd.Timedelta(days=1)
    if test_from < train_stop:
        raise SystemExit("the test window must start after the training data ends")
    ts = frame["timestamp"]
    train = frame.loc[ts < train_stop].reset_index(drop=True)
    test = frame.loc[(ts >= test_from) & (ts < test_stop)].reset_index(drop=True)
    return train, test


# --- the original system's model (benchmark only) --------------------------------------------
class OriginalFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The original system's feature set, from `(counter_id, timestamp)`, Paris-local calendar.

    Output columns: counter_id, weekday (both one-hot encoded by the next step), day of month,
    year, hour sin/cos, month sin/cos.
    """

    def fit(self, frame: pd.DataFrame, y: Any = None) -> OriginalFeatures:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        local = to_utc(frame["timestamp"]).tz_convert(PARIS_TZ)
        hour = local.hour.to_numpy(dtype=np.float64)
        month = local.month.to_numpy(dtype=np.float64)
        return pd.DataFrame(
            {
                "counter_id": frame["counter_id"].astype(str).to_numpy(),
                "weekday": local.weekday.to_numpy(),
                "day": local.day.to_numpy(dtype=np.float64),
                "year": local.year.to_numpy(dtype=np.float64),
                "hour_sin": np.sin(2 * np.pi * hour / 24),
                "hour_cos": np.cos(2 * np.pi * hour / 24),
                "month_sin": np.sin(2 * np.pi * (month - 1) / 12),
                "month_cos": np.cos(2 * np.pi * (month - 1) / 12),
            }
        )


def original_pipeline(random_state: int = 0) -> Pipeline:
    one_hot = ColumnTransformer(
        [("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False),
          ["counter_id", "weekday"])],
        remainder="passthrough",
    )
    forest = RandomForestRegressor(
        n_estimators=50, max_depth=20, n_jobs=-1, random_state=random_state
    )
    return Pipeline([("features", OriginalFeatures()), ("one_hot", one_hot), ("model", forest)])


# --- the previous default (before/after) -----------------------------------------------------
def previous_default_fit(train: pd.DataFrame) -> tuple[Pipeline, str]:
    """The project's model before this work: CalendarFeatures + HGB(lr 0.1, 300 iterations,
    63 leaves, min 40 per leaf); Poisson vs log1p target picked on the last 7 days by RMSE."""

    def pipeline(target: str) -> Pipeline:
        hgb = {"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 63,
               "min_samples_leaf": 40, "l2_regularization": 0.0,
               "categorical_features": [COUNTER_FEATURE], "early_stopping": False,
               "random_state": 0}
        model: Any = HistGradientBoostingRegressor(loss="poisson", **hgb)
        if target == "log1p":
            model = TransformedTargetRegressor(
                regressor=HistGradientBoostingRegressor(**hgb), func=np.log1p,
                inverse_func=np.expm1, check_inverse=False,
            )
        return Pipeline([("features", CalendarFeatures()), ("model", model)])

    cut = train["timestamp"].max() - pd.Timedelta(days=7)
    fit_part, val_part = train[train["timestamp"] <= cut], train[train["timestamp"] > cut]
    rmse = {}
    for target in ("poisson", "log1p"):
        candidate = pipeline(target).fit(fit_part.loc[:, INPUT_COLUMNS], fit_part["count"])
        rmse[target] = score(val_part["count"], predict_counts(candidate, val_part))["rmse"]
    chosen = min(rmse, key=lambda t: rmse[t])
    return pipeline(chosen).fit(train.loc[:, INPUT_COLUMNS], train["count"]), chosen


# --- measurement in a child process ----------------------------------------------------------
def _rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), in MB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KB


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: first-call costs (imports, caches) are not what serving sees
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def run_job(name: str, data: str, windows: tuple[str, str, str]) -> dict[str, Any]:
    """Runs in a fresh child process: load, fit (timed, RSS), predict the test window."""
    train, test = split(load_counts(data), *windows)
    gc.collect()
    rss_before, peak_before = _rss_mb(), _peak_mb()
    info: dict[str, Any] = {}
    start = time.perf_counter()
    pipeline: Pipeline | None = None
    if name == "ours":
        result = fit_with_target_selection(train, ModelParams())
        pipeline = result.pipeline
        info = {"target": result.target, "validation": result.validation,
                "params": asdict(ModelParams())}
    elif name == "previous default":
        pipeline, target = previous_default_fit(train)
        info = {"target": target}
    elif name == "original":
        pipeline = original_pipeline().fit(train.loc[:, INPUT_COLUMNS], train["count"])
    elif name == "naive":
        pred = seasonal_naive(train, test)
    else:
        raise ValueError(name)
    fit_s = time.perf_counter() - start
    peak_after = _peak_mb()
    out: dict[str, Any] = {
        "name": name, "fit_s": fit_s, "peak_mb": peak_after, "rss_before_mb": rss_before,
        "fit_added_mb": peak_after - rss_before, "peak_set_by_fit": peak_after > peak_before,
        "train_rows": len(train), "test_rows": len(test), **info,
    }
    if pipeline is not None:
        pred = predict_counts(pipeline, test)
        one = test.iloc[[len(test) // 2]]
        batch = test.iloc[np.arange(BATCH_ROWS) % len(test)].reset_index(drop=True)
        with threadpool_limits(limits=1, user_api="openmp"):  # as the serving app
            out["predict_1_ms"] = _median_ms(lambda: predict_counts(pipeline, one), 30)
            out["predict_batch_ms"] = _median_ms(lambda: predict_counts(pipeline, batch), 5)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.joblib"
            joblib.dump(pipeline, path)
            out["artifact_mb"] = path.stat().st_size / 2**20
    out["pred"] = np.asarray(pred, dtype=np.float64)
    return out


def measure(name: str, data: str, windows: tuple[str, str, str]) -> dict[str, Any]:
    """One fresh spawned process per model, so that no fit inherits another one's memory."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_job, name, data, windows).result()


# --- validation study (inside the training period only) ---------------------------------------
# Each variant is the default with one change; the defaults of ModelParams were decided on this
# table (mean R² over the folds, all rows scored), never on the test window.
STUDY_VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "blend 1.0 (model alone)": {"blend": 1.0},
    "blend 0.25": {"blend": 0.25},
    "blend 0.75": {"blend": 0.75},
    "month/day-of-year raw": {"annual": "raw"},
    "no level features": {"level_weeks": 0},
    "level gap 1 week": {"level_gap_weeks": 1},
    "level as offset": {"offset": True},
    "no recency weights": {"half_life_days": None},
    "half-life 14 d": {"half_life_days": 14.0},
    "half-life 56 d": {"half_life_days": 56.0},
    "outage days dropped": {"drop_outages": True},
    "all history": {"history_days": None},
    "min_samples_leaf 500": {"min_samples_leaf": 500},
    "TrainingConfig's hyperparameters": {"max_iter": 300, "max_leaf_nodes": 63,
                                         "min_samples_leaf": 40, "l2_regularization": 0.0},
}


def validation_folds(
    train: pd.DataFrame, n_folds: int, weeks: int
) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Fold i: fit on everything before a `weeks`-week window, score the window; the windows
    end where train ends, then `weeks` weeks earlier, and so on."""
    end = train["timestamp"].max() + pd.Timedelta(hours=1)
    folds = []
    for i in range(n_folds):
        stop = end - pd.Timedelta(weeks=weeks * i)
        start = stop - pd.Timedelta(weeks=weeks)
        ts = train["timestamp"]
        folds.append((train.loc[ts < start], train.loc[(ts >= start) & (ts < stop)]))
    return folds


def validation_study(train: pd.DataFrame, n_folds: int = 6, weeks: int = 4) -> str:
    """The table of the variants, Poisson target for all (the default picks its target per fit
    on a 7-day hold-out; fixing it here keeps the study at one fit per fold and variant)."""
    folds = validation_folds(train, n_folds, weeks)
    rows = []
    naive = [score(va["count"], seasonal_naive(tr, va))["r2"] for tr, va in folds]
    rows.append(("seasonal naive", naive, float("nan")))
    for name, change in STUDY_VARIANTS.items():
        params = replace(ModelParams(), **change)
        r2, start = [], time.perf_counter()
        for tr, va in folds:
            pipeline = fit_pipeline(build_pipeline(params, "poisson"), tr, params)
            r2.append(score(va["count"], predict_counts(pipeline, va))["r2"])
        rows.append((name, r2, (time.perf_counter() - start) / n_folds))
        print(f"  {name}: {np.mean(r2):.4f}", file=sys.stderr, flush=True)
    first = [va["timestamp"].min().tz_convert(PARIS_TZ).date() for _, va in folds]
    head = "| variant (default + one change) | mean R² | " + " | ".join(
        f"from {d}" for d in first) + " | fit s / fold |"
    lines = [head, "|---|---:|" + "---:|" * len(folds) + "---:|"]
    for name, r2, fit_s in rows:
        lines.append(f"| {name} | {np.mean(r2):.4f} | " + " | ".join(f"{x:.3f}" for x in r2)
                     + f" | {_fmt(fit_s, 1)} |")
    return "\n".join(lines)


# --- report ----------------------------------------------------------------------------------
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    arch = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=False)
    return (f"{arch.stdout.strip() or platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs, "
            f"Python {platform.python_version()}")


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return f"{value:,.{digits}f}"


def table(results: dict[str, dict[str, Any]], scores: dict[str, dict[str, float]]) -> str:
    head = ("| model | R² | RMSE | MAE | log-RMSE | fit s | peak RSS MB | fit +RSS MB "
            "| predict 1 row ms | predict 16,800 rows ms | artifact MB |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, res in results.items():
        s = scores[name]
        lines.append(
            f"| {name} | {_fmt(s['r2'], 3)} | {_fmt(s['rmse'], 1)} | {_fmt(s['mae'], 1)} "
            f"| {_fmt(s['rmse_log1p'], 3)} | {_fmt(res['fit_s'], 2)} | {_fmt(res['peak_mb'], 0)} "
            f"| {_fmt(res['fit_added_mb'], 0)} | {_fmt(res.get('predict_1_ms'), 1)} "
            f"| {_fmt(res.get('predict_batch_ms'), 0)} | {_fmt(res.get('artifact_mb'), 1)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="the counts parquet (API field names)")
    parser.add_argument("--train-end", default="2021-07-09", help="last training day (Paris)")
    parser.add_argument("--test-start", default="2021-07-10", help="first test day (Paris)")
    parser.add_argument("--test-end", default="2021-08-09", help="last test day (Paris)")
    parser.add_argument("--no-previous", action="store_true", help="skip the previous default")
    parser.add_argument("--no-original", action="store_true", help="skip the RandomForest")
    parser.add_argument("--study", action="store_true",
                        help="also run the validation study inside the training period")
    parser.add_argument("--out", default=str(RESULTS), help="Markdown report path")
    args = parser.parse_args(argv)

    windows = (args.train_end, args.test_start, args.test_end)
    train, test = split(load_counts(args.data), *windows)
    load_before = os.getloadavg()
    names = [n for n in MODELS
             if not (n == "previous default" and args.no_previous)
             and not (n == "original" and args.no_original)]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"fitting {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name, args.data, windows)
    load_after = os.getloadavg()

    truth = test["count"].to_numpy(dtype=np.float64)
    scores = {name: score(truth, res["pred"]) for name, res in results.items()}
    ours, naive = scores["ours"], scores["naive"]
    gain = ours["r2"] - naive["r2"]
    lines = [
        "# Model quality benchmark (bench/model_quality.py)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {machine()}",
        f"- load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in load_after)}; the CPU was shared with other "
        "engineers' jobs, so every time below is noisy (re-run on an idle machine for "
        "reference figures)",
        f"- data: `{Path(args.data).name}`; train: up to {args.train_end} (Paris), "
        f"{len(train):,} rows, {train['counter_id'].nunique()} counters; test: "
        f"{args.test_start} .. {args.test_end} (Paris), {len(test):,} rows (never seen by any fit)",
        "",
        table(results, scores),
        "",
    ]
    if "original" in results:
        ratio = results["original"]["fit_s"] / results["ours"]["fit_s"]
        met = "met" if ratio >= TARGET_SPEEDUP else "NOT met"
        lines.append(f"- speed ratio original / ours (fit): {ratio:.1f}x "
                     f"(target >= {TARGET_SPEEDUP:.0f}x: {met})")
    lines += [
        f"- ours - naive R²: {gain:+.3f} (target >= +{TARGET_GAIN_OVER_NAIVE:.2f}: "
        f"{'met' if gain >= TARGET_GAIN_OVER_NAIVE else 'NOT met'}; stretch R² >= {TARGET_R2}: "
        f"{'met' if ours['r2'] >= TARGET_R2 else 'NOT met'})",
        f"- ours fit {results['ours']['fit_s']:.1f} s (target <= {TARGET_FIT_S:.0f} s: "
        f"{'met' if results['ours']['fit_s'] <= TARGET_FIT_S else 'NOT met'}), peak RSS "
        f"{results['ours']['peak_mb']:.0f} MB (target <= {TARGET_PEAK_MB:.0f} MB: "
        f"{'met' if results['ours']['peak_mb'] <= TARGET_PEAK_MB else 'NOT met'})",
        f"- ours: target chosen by time-based validation (last 7 days of train): "
        f"**{results['ours']['target']}**; validation scores: "
        + ", ".join(f"{t} RMSE {v['rmse']:.1f} / R² {v['r2']:.3f}"
                    for t, v in results["ours"]["validation"].items()),
    ]
    if "previous default" in results:
        lines.append(f"- previous default: target chosen: {results['previous default']['target']}")
    lines += [
        "",
        "Notes: \"fit s\" of ours and of the previous default includes their target selection "
        "(two fits on the training data minus its last 7 days, then the refit on all of it); "
        "\"fit s\" of naive is the whole `seasonal_naive` call. \"peak RSS\" is the child "
        "process's high-water mark (interpreter, pandas, the loaded data and the fit), \"fit "
        "+RSS\" that peak minus the resident size just before the fit. Predict times are the "
        "median of repeated `predict_counts` calls in the same process, one OpenMP thread. "
        "Fit threads: ours 1 (`ModelParams.fit_threads`), the others all CPUs.",
    ]
    if args.study:
        print("validation study ...", file=sys.stderr, flush=True)
        lines += [
            "",
            "## Validation study (training period only: how the defaults were chosen)",
            "",
            "Folds of 4 weeks inside the training data (fit on everything before the window, "
            "score the window, all rows); every variant is the default with one change, "
            "Poisson target. Fit times are single-process, noisy.",
            "",
            validation_study(train),
        ]
    report = "\n".join(lines) + "\n"
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
