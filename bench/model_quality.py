"""Model quality on the real Paris counts: ours vs a plain gradient boosting, the original
system's forest, a neural net and the seasonal naive, on several windows; and the platform as
it is used, week by week.

    .venv/bin/python bench/model_quality.py --data PATH [--out FILE] [--quick]
        [--windows july,august,...] [--rolling-weeks 8] [--no-rolling]

PATH is the shared `counts_*.parquet` (the API's field names). Dates are Paris-local days.

1. Windows (`--windows`): for each, every model is fitted on all hours before the test window
   and scored on the same rows of it (counters every model knows). Among them seasonal turns:
   the end of the 2020 lockdown, the April 2021 lockdown, July, the August drop.
   - ours: `fit_with_selection(train, ModelParams())`, the training asset's procedure;
   - plain HGBR: `HistGradientBoostingRegressor(loss="poisson")` on (counter, Paris hour,
     weekday, month, day of year), no tuning, no recent level, all history: the model a user
     could write in ten lines;
   - original: the original system's RandomForest(50, depth 20) on its features;
   - mlp: ours with `kind="mlp"` (the original's second family);
   - naive: the seasonal naive (4-week counter x hour-of-week median).
2. Rolling (`--rolling-weeks N`, the last N whole weeks of the file): the platform as used,
   replayed with its own code: every week, the splits with the recorded regression window,
   the challenger procedure, `evaluate_split` + `decide_on_splits` (what `evaluation_report`
   runs), the served artifact (challenger refit / champion / naive, as decided), then every
   day the level update (`refresh_level`, what `champion_level` runs) and that day's forecast
   by the served artifact. Beside it, on the same rows: the naive of the week and the plain
   HGBR refit weekly. Not through Dagster (no MLflow, no warehouse): the same functions.

Timings are wall clock on a shared machine (load average written beside them); the fit of
"ours" includes its selection fits and, in the rolling part, the served refit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _figures import Figure, write_figures  # noqa: E402
from _machine import cpu_model, uname_m  # noqa: E402

from bike_assets.lifecycle.evaluate import decide_on_splits, evaluate_split  # noqa: E402
from bike_assets.ml.features import calendar_frame, to_utc  # noqa: E402
from bike_assets.ml.level_update import refresh_level  # noqa: E402
from bike_assets.ml.metrics import score  # noqa: E402
from bike_assets.ml.model import (  # noqa: E402
    ModelParams,
    fit_with_selection,
    known_counters,
    predict_counts,
    refit,
)
from bike_assets.ml.naive import fit_naive, seasonal_naive  # noqa: E402
from bike_assets.ml.paris_days import paris_day_start  # noqa: E402
from bike_assets.ml.pointer import ChampionPointer  # noqa: E402
from bike_assets.ml.splits import SplitWindows, make_splits  # noqa: E402
from bike_assets.settings import PARIS_TZ, Thresholds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "model_quality.md"
API_COLUMNS = {"id_compteur": "counter_id", "sum_counts": "count", "date": "timestamp"}
# name: (first test day, last test day), inclusive; the training data is everything before
WINDOWS = {
    "lockdown_end": ("2020-12-16", "2021-01-12"),
    "april": ("2021-04-01", "2021-04-28"),
    "july": ("2021-07-01", "2021-07-31"),
    "august": ("2021-07-26", "2021-08-09"),
}
TARGET_FIT_S = 60.0


# --- data -------------------------------------------------------------------------------------
def load_counts(path: str) -> pd.DataFrame:
    """The parquet in the API's field names -> the tidy columns, sorted by time."""
    frame = pd.read_parquet(path, columns=list(API_COLUMNS)).rename(columns=API_COLUMNS)
    frame["counter_id"] = frame["counter_id"].astype(str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    frame["count"] = frame["count"].astype(np.float64)
    return frame.sort_values(["timestamp", "counter_id"], kind="stable").reset_index(drop=True)


def between(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    mask = (frame["timestamp"] >= start) & (frame["timestamp"] < end)
    return frame.loc[mask].reset_index(drop=True)


# --- the reference models -------------------------------------------------------------------
def plain_hgbr(train: pd.DataFrame) -> Any:
    """Poisson HGBR on (counter, hour, weekday, month, day of year): no tuning, no level."""
    codes = {c: i for i, c in enumerate(sorted(train["counter_id"].unique()))}

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        cal = calendar_frame(frame["timestamp"])[["hour", "weekday", "month", "day_of_year"]]
        return cal.assign(counter=frame["counter_id"].map(codes).to_numpy(dtype=np.float64))

    model = HistGradientBoostingRegressor(loss="poisson", categorical_features=[4], random_state=0)
    model.fit(features(train), train["count"])
    return lambda frame: np.clip(model.predict(features(frame)), 0.0, None)


class OriginalFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """The original system's features (Paris-local): counter and weekday (one-hot next), day
    of month, year, hour and month as sin/cos."""

    def fit(self, frame: pd.DataFrame, y: Any = None) -> OriginalFeatures:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        local = to_utc(frame["timestamp"]).tz_convert(PARIS_TZ)
        hour, month = local.hour.to_numpy(np.float64), local.month.to_numpy(np.float64)
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


def original_forest(train: pd.DataFrame) -> Any:
    one_hot = ColumnTransformer(
        [
            (
                "one_hot",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ["counter_id", "weekday"],
            )
        ],
        remainder="passthrough",
    )
    forest = RandomForestRegressor(n_estimators=50, max_depth=20, n_jobs=-1, random_state=0)
    pipeline = Pipeline([("features", OriginalFeatures()), ("one_hot", one_hot), ("model", forest)])
    pipeline.fit(train[["counter_id", "timestamp"]], train["count"])
    return lambda frame: np.clip(pipeline.predict(frame[["counter_id", "timestamp"]]), 0.0, None)


def ours(train: pd.DataFrame, params: ModelParams | None = None) -> Any:
    pipeline = fit_with_selection(train, params or ModelParams()).pipeline
    return lambda frame: predict_counts(pipeline, frame)


MODELS = {
    "ours": ours,
    "plain HGBR (Poisson)": plain_hgbr,
    "original RF": original_forest,
    "mlp": lambda train: ours(train, ModelParams(kind="mlp", max_iter=60)),
}


# --- 1. windows -----------------------------------------------------------------------------
def run_window(raw: pd.DataFrame, name: str, models: dict[str, Any]) -> list[dict[str, Any]]:
    first, last = WINDOWS[name]
    start, end = paris_day_start(first), paris_day_start(last, 1)
    train = raw[raw["timestamp"] < start]
    test = between(raw, start, end)
    test = test[test["counter_id"].isin(set(train["counter_id"]))].reset_index(drop=True)
    rows = []
    for model_name, fit in models.items():
        began = time.perf_counter()
        predict = fit(train)
        fit_s = time.perf_counter() - began
        rows.append(
            {
                "window": name,
                "model": model_name,
                **score(test["count"], predict(test)),
                "fit_s": fit_s,
            }
        )
        print(f"  {name:13s} {model_name:22s} R² {rows[-1]['r2']:.3f} ({fit_s:.1f} s)", flush=True)
    rows.append(
        {
            "window": name,
            "model": "naive",
            **score(test["count"], seasonal_naive(train, test)),
            "fit_s": float("nan"),
        }
    )
    return rows


# --- 2. rolling: the platform as used ---------------------------------------------------------
@dataclass
class Served:
    pipeline: Any
    pointer: ChampionPointer
    level_as_of: date


@dataclass
class Week:
    start: date
    decision: str = ""
    serve: str = ""
    served_version: str = ""
    retrain_s: float = 0.0
    predictions: dict[str, list[np.ndarray]] = field(default_factory=dict)
    truth: list[np.ndarray] = field(default_factory=list)


def _hours(frame: pd.DataFrame) -> dict[str, str]:
    return {
        "start": frame["timestamp"].min().isoformat(),
        "end": (frame["timestamp"].max() + pd.Timedelta(hours=1)).isoformat(),
    }


def retrain(
    data: pd.DataFrame, window: tuple[date, date] | None, champion: Served | None, version: int
) -> tuple[Served | None, str, str, tuple[date, date], float]:
    """One `retrain_job`, with the functions its assets run."""
    began = time.perf_counter()
    splits = make_splits(data, SplitWindows(), regression_window=window)
    window = splits.ranges["test_baseline"]
    train = pd.concat([splits.train_baseline, splits.train_current], ignore_index=True)
    everything = pd.concat([train, splits.test_current], ignore_index=True)
    fit = fit_with_selection(train, ModelParams())
    served = refit(fit, everything)
    excluded = [_hours(splits.test_baseline)]
    served_range = {**_hours(everything), "excluded": excluded}
    history = pd.concat([splits.train_baseline, splits.test_baseline, splits.train_current])
    pointer = champion.pointer if champion else None
    model = champion.pipeline if champion else None
    scores = {
        name: evaluate_split(getattr(splits, name), history, fit.pipeline, model, pointer)
        for name in ("test_baseline", "test_current")
    }
    decision = decide_on_splits(scores, served_range, pointer, Thresholds())
    last_day = (everything["timestamp"].max()).tz_convert(PARIS_TZ).date()
    elapsed = time.perf_counter() - began
    if decision.serve == "challenger":
        new = ChampionPointer(str(version), "", served_range, {}, kind="model")
        return Served(served, new, last_day), decision.decision, decision.serve, window, elapsed
    if decision.serve == "naive":
        recent = data[data["timestamp"] >= data["timestamp"].max() - pd.Timedelta(weeks=4)]
        naive = fit_naive(recent)
        new = ChampionPointer(
            str(version), "", {**_hours(recent), "excluded": []}, {}, kind="naive"
        )
        return Served(naive, new, last_day), decision.decision, decision.serve, window, elapsed
    return champion, decision.decision, decision.serve, window, elapsed


def rolling(raw: pd.DataFrame, weeks: int) -> list[Week]:
    end_day = (raw["timestamp"].max() + pd.Timedelta(hours=1)).tz_convert(PARIS_TZ).date()
    first = end_day - timedelta(days=7 * weeks)
    champion: Served | None = None
    window: tuple[date, date] | None = None
    out = []
    for k in range(weeks):
        week = Week(start=first + timedelta(days=7 * k))
        start = paris_day_start(week.start)
        data = raw[raw["timestamp"] < start]
        champion, week.decision, week.serve, window, week.retrain_s = retrain(
            data, window, champion, version=k + 1
        )
        assert champion is not None
        week.served_version = f"v{champion.pointer.version} ({champion.pointer.kind})"
        plain = plain_hgbr(data)
        test_week = between(raw, start, paris_day_start(week.start + timedelta(days=7)))
        naive_week = seasonal_naive(
            data,
            test_week[test_week["counter_id"].isin(known_counters(champion.pipeline))].reset_index(
                drop=True
            ),
        )
        known = set(known_counters(champion.pipeline))
        naive_rows = 0
        for d in range(7):
            day = week.start + timedelta(days=d)
            if champion.level_as_of < day - timedelta(days=1):  # champion_level, daily
                before = raw[
                    (raw["timestamp"] < paris_day_start(day))
                    & (raw["timestamp"] >= paris_day_start(day) - pd.Timedelta(weeks=4))
                ]
                champion = replace(
                    champion,
                    pipeline=refresh_level(champion.pipeline, before),
                    level_as_of=day - timedelta(days=1),
                )
            rows = between(raw, paris_day_start(day), paris_day_start(day + timedelta(days=1)))
            rows = rows[rows["counter_id"].isin(known)].reset_index(drop=True)
            week.truth.append(rows["count"].to_numpy())
            week.predictions.setdefault("platform", []).append(
                predict_counts(champion.pipeline, rows)
            )
            week.predictions.setdefault("plain HGBR refit weekly", []).append(plain(rows))
            week.predictions.setdefault("naive", []).append(
                naive_week[naive_rows : naive_rows + len(rows)]
            )
            naive_rows += len(rows)
        print(
            f"  week {week.start}: {week.decision} -> serve {week.serve} {week.served_version} "
            f"(retrain {week.retrain_s:.1f} s); R² "
            + ", ".join(
                f"{m} {score(np.concatenate(week.truth), np.concatenate(p))['r2']:.3f}"
                for m, p in week.predictions.items()
            ),
            flush=True,
        )
        out.append(week)
    return out


# --- report ---------------------------------------------------------------------------------
def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def machine() -> str:
    return f"{uname_m()}, {cpu_model()}, {os.cpu_count()} logical CPUs"


def windows_table(rows: list[dict[str, Any]]) -> str:
    frame = pd.DataFrame(rows)
    frame = frame.rename(
        columns={
            "r2": "R²",
            "rmse": "RMSE",
            "mae": "MAE",
            "rmse_log1p": "log-RMSE",
            "fit_s": "fit s",
        }
    )
    return (
        frame[["window", "model", "R²", "RMSE", "MAE", "log-RMSE", "rows", "fit s"]]
        .round(3)
        .to_markdown(index=False)
    )


def rolling_table(weeks: list[Week]) -> str:
    rows = []
    for week in weeks:
        truth = np.concatenate(week.truth)
        rows.append(
            {
                "week from": str(week.start),
                "decision": week.decision,
                "served": week.served_version,
                "retrain s": round(week.retrain_s, 1),
                **{
                    m: round(score(truth, np.concatenate(p))["r2"], 3)
                    for m, p in week.predictions.items()
                },
            }
        )
    rows.append(
        {
            "week from": "**all**",
            "decision": "",
            "served": "",
            "retrain s": "",
            **{m: round(r2, 3) for m, r2 in _overall_r2(weeks).items()},
        }
    )
    return pd.DataFrame(rows).to_markdown(index=False)


def _overall_r2(weeks: list[Week]) -> dict[str, float]:
    """R² of each model over all rolling weeks' hours together."""
    truth = np.concatenate([np.concatenate(w.truth) for w in weeks])
    return {
        m: score(truth, np.concatenate([np.concatenate(w.predictions[m]) for w in weeks]))["r2"]
        for m in weeks[0].predictions
    }


def _compared(
    what: str, unit: str, values: dict[str, float], ours: str, reference: str, better: str
) -> Figure:
    """values[ours] against values[reference], measured in the same run; `better` is the target
    ("> x", "< x", ">= x"), its operator read from its first word."""
    value, ref = values[ours], values[reference]
    met = {">": value > ref, "<": value < ref, ">=": value >= ref}[better.split()[0]]
    return Figure(
        what=what,
        value=value,
        unit=unit,
        reference=reference,
        reference_value=ref,
        target=better,
        met=bool(met),
    )


def figures(rows: list[dict[str, Any]], weeks: list[Week]) -> list[Figure]:
    out = []
    frame = pd.DataFrame(rows)
    for name, group in frame.groupby("window", sort=False):
        r2 = dict(zip(group["model"], group["r2"], strict=True))
        lr = dict(zip(group["model"], group["rmse_log1p"], strict=True))
        out.append(
            _compared(
                f"R² ours, window {name}", "R²", r2, "ours", "plain HGBR (Poisson)", "> plain HGBR"
            )
        )
        out.append(_compared(f"log-RMSE ours, window {name}", "", lr, "ours", "naive", "< naive"))
    if weeks:
        out.append(
            _compared(
                f"rolling R², last {len(weeks)} weeks, platform",
                "R²",
                _overall_r2(weeks),
                "platform",
                "plain HGBR refit weekly",
                ">= plain HGBR refit weekly",
            )
        )
        beats = all(
            score(np.concatenate(w.truth), np.concatenate(w.predictions["platform"]))["r2"]
            > score(np.concatenate(w.truth), np.concatenate(w.predictions["naive"]))["r2"]
            for w in weeks
        )
        out.append(
            Figure(
                what="rolling: platform above the naive in every week",
                value=float(beats),
                unit="bool",
                target="every week",
                met=beats,
            )
        )
        out.append(
            Figure(
                what="retrain on the whole period (first rolling week)",
                value=weeks[0].retrain_s,
                unit="s",
                target=f"<= {TARGET_FIT_S:.0f} s",
                met=weeks[0].retrain_s <= TARGET_FIT_S,
                note="the assets' functions, without Dagster/MLflow overhead",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the shared counts_*.parquet")
    parser.add_argument("--out", default=str(RESULTS), help="the Markdown report to write")
    parser.add_argument("--windows", default=",".join(WINDOWS))
    parser.add_argument("--rolling-weeks", type=int, default=8)
    parser.add_argument("--no-rolling", action="store_true")
    parser.add_argument("--models", default=",".join(MODELS), help="models of the windows part")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="two windows, ours/plain only, 2 rolling weeks (minutes)",
    )
    parser.add_argument("--no-previous", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.rolling_weeks, args.models = (
            "july,august",
            2,
            "ours,plain HGBR (Poisson)",
        )
    raw = load_counts(args.data)
    started, load_before = datetime.now(UTC), load_line()
    print(f"{len(raw):,} rows, {raw['counter_id'].nunique()} counters", flush=True)
    models = {name: MODELS[name] for name in args.models.split(",")}
    rows = [r for name in args.windows.split(",") if name for r in run_window(raw, name, models)]
    weeks = [] if args.no_rolling else rolling(raw, args.rolling_weeks)
    report = "\n".join(
        [
            "# Model quality on the real Paris counts",
            "",
            f"Run {started:%Y-%m-%d %H:%M} UTC on {machine()}; {load_before} before, "
            f"{load_line()} after. Data: `{Path(args.data).name}` ({len(raw):,} rows, "
            f"{raw['counter_id'].nunique()} counters). Command: `bench/model_quality.py "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`.",
            "",
            "## Windows (train on everything before, test the window; same rows for every model)",
            "",
            windows_table(rows) if rows else "_not run_",
            "",
            f"## Rolling: the platform as used, the last {len(weeks)} weeks",
            "",
            "Each week: retrain decision with the platform's functions, the served artifact, daily "
            "level updates, each day forecast by what was served that day. R² per week.",
            "",
            rolling_table(weeks) if weeks else "_not run_",
            "",
        ]
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    write_figures(out, figures(rows, weeks))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
