"""Data drift between the training reference and the last week, measured with Evidently.

`measure_drift(reference, current)` takes two tidy raw frames (`bike_assets.schema`): the
reference is a sample of the rows the champion was trained on (`train_baseline`), the current
window is the last 7 days. It returns a `DriftResult` whose `share` is the share of monitored
columns that Evidently found drifted (its `DriftedColumnsCount` metric), which the retraining
decision compares with `drift_warning` (0.3) and `drift_critical` (0.5).

Which columns, and why
----------------------
A share is only worth a threshold if every column in its denominator is comparable between a
multi-week reference and one week, so that an unchanged process reads ~0 and a real change reads
high. Two things make raw columns fail that test here:

* the calendar: `month` and `day_of_year` of "the last 7 days" never match a reference spanning
  weeks (they drift by construction, every week), `hour_of_week` is (weekday, hour), holiday
  flags are rare events; so no calendar feature is monitored raw;
* the city-wide level: Paris traffic moves by 20-50 % from month to month (June and September
  peaks, the August dip) and by 10-30 % from week to week with the weather, for every counter at
  once, and `train_baseline` ends weeks before the current window. Every level-based column
  would read "drift" most weeks. A change that hits every counter alike cannot be told apart
  from season or weather with one week of data, so it is left to one column (`count`) and to the
  champion's R2/RMSE (`champion_health`), which know what the model expected.

So 9 columns, built in Paris local time with `calendar_frame`:

Model inputs, as categorical distributions (Jensen-Shannon distance, drifted at >= 0.1). They are
stable for a healthy feed and move when data goes missing or the network changes:
    counter_id   the counter mix: share of rows per counter (counter removed, added, silent)
    hour         hour-of-day coverage (e.g. the feed stops delivering nights)
    weekday      day-of-week coverage (e.g. missing days in the window)

The target:
    count        raw hourly counts, all counters together (Evidently's Wasserstein distance
                 normed by the reference standard deviation, drifted at >= 0.1). The one
                 column that sees city-wide changes (season, weather, every counter at once).
    rel_count_am_peak, rel_count_pm_peak, rel_count_daytime, rel_count_night,
    rel_count_rest_day
                 each counter's traffic relative to its usual level AND to the city that day:
                 count / (reference mean of that counter in that part of the week)
                       / (the city's factor for that day and part: sum of counts / sum of
                          the counters' reference means, over the rows of that day and part)
                 Parts of the week: working-day morning peak 07-09 h, evening peak 17-19 h,
                 daytime 10-16 h, night 20-06 h, rest days (weekends, public holidays) all day;
                 the value is NaN outside its part (Evidently drops NaN per column). Dividing by
                 the counter's reference level removes the counter mix and the daily profile;
                 dividing by the city factor of the day removes season and weather. What is
                 left moves when *some* counters change against the others: a level shift or a
                 bent profile on part of the network, broken counters stuck at 0 or at a value.
                 Compared with a plain Wasserstein distance in those units (the method
                 `bike_level_wasserstein`, registered below) and drifted at >= 0.07, i.e. the
                 counters' relative levels moved by 7 % of their usual level on average
                 (Evidently's normed Wasserstein is not used: 0.1 standard deviation of these
                 ratios depends on each counter's noise, not on what changed). Five parts
                 rather than one because a change of commuting only (strikes, remote-work days)
                 or of nights only is another story than a change everywhere.

What the share then means: 3 columns describe the inputs the model sees, 6 the target. A level
shift on part of the network (up to ~90 % of the counters) moves the 5 relative columns and
usually `count`: share 5/9-6/9 (>= drift_critical). An unchanged process, whatever the season or
the weather, moves at most `count`: share <= 1/9. A feed losing data moves the input columns.
A change on exactly every counter moves only `count` (1/9): by design, see above.

Calibration of the two target thresholds, on `bike_assets.sources.synthetic` (calibrated on the
real counts; 100 counters, 8-week reference, 11 current weeks across 2024, 3 seeds, the
reference ending 0 to 7 weeks before the current week): the relative columns read <= 0.055
without drift and >= 0.07 with its `level_shift` (40 % of counters x0.45 or x1.8); shares were
<= 0.11 without drift and >= 0.56 with it. The thresholds are module constants: re-check them
on real data before tightening the alerting.

Methods and thresholds are explicit per column, never Evidently's size-dependent defaults (a
p-value test below 1,000 reference rows, a distance above). `DataDefinition` is explicit too:
integer columns with few values would otherwise be guessed categorical.

Reference and current
---------------------
The per-(counter, part) reference means come from the whole `reference` frame (a pandas groupby,
cheap); a mean over fewer than `MIN_PROFILE_ROWS` rows or equal to 0 is not used (its ratios
are NaN: a counter that counted nothing has no level to compare with). Evidently then gets a
seeded sample of at most `reference_cap` reference rows (`seed`), so the cost does not grow with
the training set; the current window is not sampled.

Failure handling: any problem (empty window, missing columns, naive timestamps, an exception
from Evidently) gives `state="not_computed"` with the reason; this function never raises, a
monitoring job must not die on a bad week. A column with no usable value in one of the windows is
skipped (listed in `skipped_columns`, left out of the denominator).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import pandas as pd

from bike_assets.ml.features import calendar_frame, to_utc
from bike_assets.settings import PARIS_TZ

log = logging.getLogger(__name__)

DriftState = Literal["computed", "not_computed"]

PARTS_OF_WEEK: tuple[str, ...] = ("am_peak", "pm_peak", "daytime", "night", "rest_day")
CATEGORICAL_COLUMNS: tuple[str, ...] = ("counter_id", "hour", "weekday")
RAW_TARGET_COLUMN = "count"
RELATIVE_COLUMNS: tuple[str, ...] = tuple(f"rel_count_{p}" for p in PARTS_OF_WEEK)
MONITORED_COLUMNS: tuple[str, ...] = (*CATEGORICAL_COLUMNS, RAW_TARGET_COLUMN, *RELATIVE_COLUMNS)

CATEGORICAL_METHOD = "jensenshannon"
CATEGORICAL_THRESHOLD = 0.1
RAW_TARGET_METHOD = "wasserstein"  # Evidently's, normed by the reference standard deviation
RAW_TARGET_THRESHOLD = 0.1
RELATIVE_METHOD = "bike_level_wasserstein"  # ours, in units of the reference level
RELATIVE_THRESHOLD = 0.07
MIN_PROFILE_ROWS = 10

_REQUIRED_INPUT = ("counter_id", "timestamp", "count")


class ColumnDrift(TypedDict):
    score: float
    method: str
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """What was measured. `share` is Evidently's measured share, never a default or a guess."""

    state: DriftState
    reason: str | None
    share: float | None
    drifted_columns: int | None
    n_columns: int
    columns: dict[str, ColumnDrift]
    html_path: str | None
    reference_rows: int
    current_rows: int
    skipped_columns: tuple[str, ...] = field(default=())

    @property
    def computed(self) -> bool:
        return self.state == "computed"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (Dagster metadata, Discord messages, logs)."""
        return {
            "state": self.state,
            "reason": self.reason,
            "share": self.share,
            "drifted_columns": self.drifted_columns,
            "n_columns": self.n_columns,
            "columns": {name: dict(col) for name, col in self.columns.items()},
            "html_path": self.html_path,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "skipped_columns": list(self.skipped_columns),
        }


def _not_computed(reason: str, *, reference_rows: int = 0, current_rows: int = 0) -> DriftResult:
    log.warning("drift not computed: %s", reason)
    return DriftResult(
        state="not_computed",
        reason=reason,
        share=None,
        drifted_columns=None,
        n_columns=0,
        columns={},
        html_path=None,
        reference_rows=reference_rows,
        current_rows=current_rows,
    )


def measure_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    html_path: Path | None = None,
    reference_cap: int = 20_000,
    seed: int = 0,
) -> DriftResult:
    """Drift of `current` (last 7 days) against `reference` (training sample); never raises."""
    try:
        problem = _input_problem(reference, "reference") or _input_problem(current, "current")
        if problem is None and reference_cap < 1:
            problem = f"reference_cap must be >= 1, got {reference_cap}"
        if problem is not None:
            return _not_computed(
                problem,
                reference_rows=_rows(reference),
                current_rows=_rows(current),
            )
        ref_frame, cur_frame = monitored_frames(reference, current)
    except Exception as exc:  # bad timestamps, unexpected dtypes: report, do not crash the job
        return _not_computed(
            f"could not build the monitored columns: {type(exc).__name__}: {exc}",
            reference_rows=_rows(reference),
            current_rows=_rows(current),
        )

    if len(ref_frame) > reference_cap:
        # Sorted back by position so the sample is the same frame whatever pandas does inside.
        ref_frame = ref_frame.sample(n=reference_cap, random_state=seed).sort_index()
    n_ref, n_cur = len(ref_frame), len(cur_frame)

    columns = [
        c for c in MONITORED_COLUMNS if _has_values(ref_frame[c]) and _has_values(cur_frame[c])
    ]
    skipped = tuple(c for c in MONITORED_COLUMNS if c not in columns)
    if skipped:
        log.info("drift: no usable value in one window for %s, left out", ", ".join(skipped))
    if not columns:
        return _not_computed(
            "no monitored column has values in both windows",
            reference_rows=n_ref,
            current_rows=n_cur,
        )

    try:
        with warnings.catch_warnings():
            # numpy's "invalid value in divide" from Evidently's correlations of a constant
            # column: harmless here (the drift scores do not use them), noisy in every log.
            warnings.simplefilter("ignore", RuntimeWarning)
            snapshot = _run_evidently(
                ref_frame[columns], cur_frame[columns], columns, for_html=html_path is not None
            )
        share, drifted, per_column = _read_snapshot(snapshot.dict(), columns)
    except Exception as exc:  # Evidently's failures are many and untyped: all mean "no number"
        return _not_computed(
            f"evidently failed: {type(exc).__name__}: {exc}",
            reference_rows=n_ref,
            current_rows=n_cur,
        )

    reason: str | None = None
    saved: str | None = None
    if html_path is not None:
        try:
            html_path = Path(html_path)
            html_path.parent.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(html_path))
            saved = str(html_path)
        except Exception as exc:  # the measurement stands even if the file could not be written
            log.warning("drift HTML report not saved to %s: %s", html_path, exc)
            reason = f"HTML report not saved: {type(exc).__name__}: {exc}"

    return DriftResult(
        state="computed",
        reason=reason,
        share=share,
        drifted_columns=drifted,
        n_columns=len(columns),
        columns=per_column,
        html_path=saved,
        reference_rows=n_ref,
        current_rows=n_cur,
        skipped_columns=skipped,
    )


def monitored_frames(
    reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 9 monitored columns for both windows (reference not sampled yet)."""
    ref = _base_columns(reference)
    cur = _base_columns(current)
    stats = ref.groupby(["counter_id", "part"], observed=True)["count"].agg(["mean", "size"])
    level = stats["mean"].where((stats["size"] >= MIN_PROFILE_ROWS) & (stats["mean"] > 0))
    return _with_relative(ref, level), _with_relative(cur, level)


def _base_columns(frame: pd.DataFrame) -> pd.DataFrame:
    cal = calendar_frame(frame["timestamp"])
    hour = cal["hour"].to_numpy(dtype=np.int64)
    weekday = cal["weekday"].to_numpy(dtype=np.int64)
    rest = (weekday >= 5) | (cal["public_holiday"].to_numpy() > 0)
    part = np.select(
        [rest, (hour >= 7) & (hour <= 9), (hour >= 17) & (hour <= 19), (hour >= 10) & (hour <= 16)],
        ["rest_day", "am_peak", "pm_peak", "daytime"],
        default="night",
    )
    local = to_utc(frame["timestamp"]).tz_convert(PARIS_TZ).tz_localize(None)
    return pd.DataFrame(
        {
            # object strings, not pandas "string": Evidently's categorical binning expects them
            "counter_id": frame["counter_id"].astype(str).to_numpy(dtype=object),
            "hour": hour,
            "weekday": weekday,
            "part": part,
            "day": local.normalize().to_numpy(),
            "count": pd.to_numeric(frame["count"], errors="coerce").to_numpy(dtype=np.float64),
        }
    )


def _with_relative(frame: pd.DataFrame, level: pd.Series) -> pd.DataFrame:
    key = pd.MultiIndex.from_arrays([frame["counter_id"], frame["part"]])
    expected = level.reindex(key).to_numpy(dtype=np.float64)
    count = frame["count"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = count / expected
    # The city's factor for each (day, part), over the rows that have a usable expectation.
    usable = np.isfinite(ratio)
    sums = (
        pd.DataFrame(
            {
                "day": frame["day"].to_numpy(),
                "part": frame["part"].to_numpy(),
                "count": np.where(usable, count, np.nan),
                "expected": np.where(usable, expected, np.nan),
            }
        )
        .groupby(["day", "part"])[["count", "expected"]]
        .transform("sum")  # NaN-skipping sums, broadcast back to the rows
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ratio / (sums["count"].to_numpy() / sums["expected"].to_numpy())
    ratio[~np.isfinite(ratio)] = np.nan  # a day-part where the whole city counted 0
    out = frame.drop(columns=["part", "day"])
    for part, column in zip(PARTS_OF_WEEK, RELATIVE_COLUMNS, strict=True):
        out[column] = np.where(frame["part"].to_numpy() == part, ratio, np.nan)
    return out


def _input_problem(frame: Any, name: str) -> str | None:
    if not isinstance(frame, pd.DataFrame):
        return f"{name} is not a DataFrame ({type(frame).__name__})"
    missing = [c for c in _REQUIRED_INPUT if c not in frame.columns]
    if missing:
        return f"{name} window lacks column(s) {missing}"
    if frame.empty:
        return f"{name} window is empty (0 rows)"
    return None


def _rows(frame: Any) -> int:
    return len(frame) if isinstance(frame, pd.DataFrame) else 0


def _has_values(series: pd.Series) -> bool:
    if series.dtype == object:
        return bool(series.notna().any())
    return bool(np.isfinite(series.to_numpy(dtype=np.float64)).any())


# --- Evidently -------------------------------------------------------------------------------
# Imported lazily: `import evidently` takes seconds, and this module is imported by the Dagster
# code location, which should load fast even when no drift is measured.

_registered = False


def _level_wasserstein(
    reference: pd.Series, current: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    """Wasserstein distance in the columns' own units (here: fractions of the reference level)."""
    from scipy import stats

    score = float(stats.wasserstein_distance(reference.to_numpy(), current.to_numpy()))
    return score, score >= threshold


def _register_level_test() -> None:
    global _registered
    if _registered:
        return
    from evidently.legacy.calculations.stattests import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    # Registered by name so the report config stays serialisable (snapshot.dict(), HTML).
    register_stattest(
        StatTest(
            name=RELATIVE_METHOD,
            display_name="Wasserstein distance (fraction of the reference level)",
            allowed_feature_types=[ColumnType.Numerical],
            default_threshold=RELATIVE_THRESHOLD,
        ),
        default_impl=_level_wasserstein,
    )
    _registered = True


def _method_and_threshold(column: str) -> tuple[str, float]:
    if column in CATEGORICAL_COLUMNS:
        return CATEGORICAL_METHOD, CATEGORICAL_THRESHOLD
    if column == RAW_TARGET_COLUMN:
        return RAW_TARGET_METHOD, RAW_TARGET_THRESHOLD
    return RELATIVE_METHOD, RELATIVE_THRESHOLD


def _run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], *, for_html: bool
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift
    from evidently.presets import DataDriftPreset

    _register_level_test()
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in CATEGORICAL_COLUMNS],
        categorical_columns=[c for c in columns if c in CATEGORICAL_COLUMNS],
    )
    methods = {c: _method_and_threshold(c) for c in columns}
    per_column_method = {c: m for c, (m, _) in methods.items()}
    per_column_threshold = {c: t for c, (_, t) in methods.items()}
    metrics: list[Any]
    if for_html:
        # The preset renders the dataset-level drift table in the HTML (a second pass over
        # every column, ~0.5 s); its metrics are exactly the two kinds below.
        metrics = [
            DataDriftPreset(
                columns=columns,
                per_column_method=per_column_method,
                per_column_threshold=per_column_threshold,
            )
        ]
    else:
        metrics = [
            DriftedColumnsCount(
                columns=columns,
                per_column_method=per_column_method,
                per_column_threshold=per_column_threshold,
            ),
            *(ValueDrift(column=c, method=m, threshold=t) for c, (m, t) in methods.items()),
        ]
    # Keywords always: Report.run's positional order is (current, reference).
    return Report(metrics).run(
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
        current_data=Dataset.from_pandas(current, data_definition=definition),
    )


def _read_snapshot(
    snapshot: dict[str, Any], columns: Iterable[str]
) -> tuple[float, int, dict[str, ColumnDrift]]:
    share: float | None = None
    drifted: int | None = None
    per_column: dict[str, ColumnDrift] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
            drifted = round(float(metric["value"]["count"]))
        elif kind.endswith(":ValueDrift"):
            score = float(metric["value"])
            threshold = float(config["threshold"])
            per_column[str(config["column"])] = ColumnDrift(
                score=score,
                method=str(config["method"]),
                threshold=threshold,
                # Evidently's own rule for the three methods used here: drifted at >= threshold.
                drifted=bool(score >= threshold),
            )
    if share is None or drifted is None or not math.isfinite(share):
        raise ValueError(f"no usable DriftedColumnsCount in the snapshot (share={share})")
    missing = [c for c in columns if c not in per_column]
    if missing:
        raise ValueError(f"no ValueDrift in the snapshot for {missing}")
    return share, drifted, per_column
