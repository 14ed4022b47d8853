"""The model artifact, its features, the naive baseline and the metrics, on small synthetic frames
made here (no real data, no network): fast, and every expected value can be checked by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bike_assets.ml.features import (
    FORECAST_FEATURE_NAMES,
    NO_LEVEL,
    ForecastFeatures,
    UnknownCounterError,
    calendar_frame,
    outage_days,
    to_utc,
)
from bike_assets.ml.metrics import mae_per_counter, score
from bike_assets.ml.model import (
    ModelParams,
    build_pipeline,
    fit_pipeline,
    fit_with_selection,
    known_counters,
    load_pipeline,
    predict_counts,
    recency_weights,
    refit,
    save_pipeline,
)
from bike_assets.ml.naive import seasonal_naive

COUNTERS = ["100001-101001", "100002-101002", "100003-101003"]
# a Monday; the 10 weeks from here have no French public holiday (see the holiday test)
START = pd.Timestamp("2024-01-08", tz="Europe/Paris")
FAST = ModelParams(max_iter=15, max_leaf_nodes=7, min_samples_leaf=20)


def counts(weeks: int, start: pd.Timestamp = START, seed: int = 0) -> pd.DataFrame:
    """Hourly counts of 3 counters: commuter peaks at 8h and 18h Paris time, quiet weekends,
    one level per counter, Poisson noise. Timestamps tz-aware UTC, like the warehouse's."""
    rng = np.random.default_rng(seed)
    local = pd.date_range(start, periods=weeks * 7 * 24, freq="h")
    hour, weekend = local.hour.to_numpy(), local.weekday.to_numpy() >= 5
    shape = (
        5
        + 80 * np.exp(-0.5 * ((hour - 8) / 1.2) ** 2)
        + 70 * np.exp(-0.5 * ((hour - 18) / 1.5) ** 2)
    )
    shape = np.where(weekend, 0.4 * shape, shape)
    level = np.array([0.5, 1.0, 2.0])
    return pd.DataFrame(
        {
            "counter_id": np.repeat(np.array(COUNTERS, dtype=object), len(local)),
            "timestamp": np.tile(local.tz_convert("UTC"), len(COUNTERS)),
            "count": rng.poisson(np.outer(level, shape)).ravel().astype(np.float64),
        }
    )


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return counts(weeks=10)


@pytest.fixture(scope="module")
def fitted(history: pd.DataFrame) -> object:
    return fit_pipeline(build_pipeline(FAST), history, FAST)


def future_rows(history: pd.DataFrame, hours: int = 48) -> pd.DataFrame:
    after = history["timestamp"].max() + pd.Timedelta(hours=1)
    stamps = pd.date_range(after, periods=hours, freq="h")
    return pd.DataFrame(
        {
            "counter_id": np.repeat(np.array(COUNTERS, dtype=object), hours),
            "timestamp": np.tile(stamps, len(COUNTERS)),
        }
    )


# --- the artifact ----------------------------------------------------------------------------
def test_save_load_gives_identical_predictions(fitted, history, tmp_path: Path) -> None:
    rows = future_rows(history)
    path = save_pipeline(fitted, tmp_path / "models" / "v1" / "model.joblib")
    loaded = load_pipeline(path)
    np.testing.assert_array_equal(predict_counts(loaded, rows), predict_counts(fitted, rows))
    assert known_counters(loaded) == sorted(COUNTERS)


def test_unknown_counter_raises_and_names_it(fitted, history) -> None:
    rows = future_rows(history, hours=2)
    rows.loc[1, "counter_id"] = "999999-999999"
    with pytest.raises(UnknownCounterError, match="999999-999999") as caught:
        predict_counts(fitted, rows)
    assert caught.value.counters == ["999999-999999"]


def test_naive_timestamps_are_refused(fitted) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        to_utc(pd.Series(pd.to_datetime(["2024-05-13 08:00"])))
    rows = pd.DataFrame(
        {"counter_id": [COUNTERS[0]], "timestamp": pd.to_datetime(["2024-05-13 08:00"])}
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        predict_counts(fitted, rows)


def test_predictions_are_non_negative_finite_for_both_targets(history) -> None:
    rows = future_rows(history, hours=7 * 24)
    for target in ("poisson", "log1p"):
        pipeline = fit_pipeline(build_pipeline(FAST, target), history, FAST)
        pred = predict_counts(pipeline, rows)
        assert np.isfinite(pred).all()
        assert (pred >= 0).all()
        assert pred.max() > 10  # it learned the peaks, not a constant 0


def test_selection_picks_annual_and_blend_on_a_time_based_holdout(history) -> None:
    result = fit_with_selection(history, FAST, validation_days=7)
    assert len(result.validation) == 8  # annual raw/none x 4 blends
    for scores in result.validation.values():
        assert np.isfinite(scores["rmse"]) and np.isfinite(scores["r2"])
        assert scores["rows"] == 7 * 24 * len(COUNTERS)  # exactly the last 7 days
    best = min(result.validation, key=lambda k: result.validation[k]["rmse"])
    assert best == f"annual_{result.params.annual}_blend_{result.params.blend}"
    assert known_counters(result.pipeline) == sorted(COUNTERS)


def test_refit_reuses_the_choices_on_other_rows(history) -> None:
    cut = history["timestamp"].max() - pd.Timedelta(days=7)
    result = fit_with_selection(history[history["timestamp"] <= cut], FAST, validation_days=7)
    served = refit(result, history)
    features = served.named_steps["features"]
    assert features.annual == result.params.annual
    assert served.named_steps["model"].blend == result.params.blend
    # the refit saw the last week: its level tables end where the history ends
    assert features.end_hour_ > result.pipeline.named_steps["features"].end_hour_


def test_the_neural_net_family_is_selectable(history) -> None:
    params = replace(FAST, kind="mlp", max_iter=30)
    result = fit_with_selection(history, params)
    pred = predict_counts(result.pipeline, future_rows(history, hours=7 * 24))
    assert np.isfinite(pred).all() and (pred >= 0).all()
    assert pred.max() > 10  # it learned the peaks
    assert known_counters(result.pipeline) == sorted(COUNTERS)


def test_random_forest_is_selectable(history) -> None:
    params = replace(FAST, kind="random_forest", n_estimators=5, max_depth=6)
    result = fit_with_selection(history, params)
    assert result.target == "poisson" and result.validation == {}
    assert (predict_counts(result.pipeline, future_rows(history)) >= 0).all()


# --- features --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("utc", "paris_hour", "weekday"),
    [
        ("2021-03-28T00:00Z", 1, 6),  # CET, before the spring change
        ("2021-03-28T01:00Z", 3, 6),  # 02:00 does not exist: 01:00Z is 03:00 CEST
        ("2021-03-28T02:00Z", 4, 6),
        ("2021-10-31T00:00Z", 2, 6),  # 02:00 CEST ...
        ("2021-10-31T01:00Z", 2, 6),  # ... and 02:00 CET again, one hour later
        ("2021-10-31T02:00Z", 3, 6),
        ("2021-10-30T22:00Z", 0, 6),  # Saturday 22:00 UTC is already Sunday in Paris
    ],
)
def test_dst_hours_are_paris_local(utc: str, paris_hour: int, weekday: int) -> None:
    cal = calendar_frame(pd.Series([pd.Timestamp(utc)]))
    assert cal.loc[0, "hour"] == paris_hour
    assert cal.loc[0, "weekday"] == weekday
    assert cal.loc[0, "hour_of_week"] == weekday * 24 + paris_hour


def test_timestamps_with_an_offset_mean_the_same_instant() -> None:
    same = calendar_frame(pd.Series(pd.to_datetime(["2021-07-14T10:00+02:00"])))
    utc = calendar_frame(pd.Series(pd.to_datetime(["2021-07-14T08:00Z"])))
    pd.testing.assert_frame_equal(same, utc)
    assert same.loc[0, "public_holiday"] == 1.0  # Bastille Day
    assert same.loc[0, "school_holiday"] == 1.0  # summer holidays, zone C


def test_recent_level_after_training_is_the_seasonal_naive(history) -> None:
    """The same definition at predict time as the baseline's: the median of the same Paris
    hour-of-week over the last 4 weeks of training (which hold no public holiday here: those
    are left out of the level, not of the naive baseline)."""
    features = ForecastFeatures().fit(history[["counter_id", "timestamp"]], history["count"])
    rows = future_rows(history, hours=7 * 24)
    x = features.transform(rows)
    level = x[:, FORECAST_FEATURE_NAMES.index("recent_level")]
    np.testing.assert_allclose(level, seasonal_naive(history, rows))


def test_fit_transform_equals_transform_on_the_training_rows(history) -> None:
    frame = history[["counter_id", "timestamp"]]
    features = ForecastFeatures()
    at_fit = features.fit_transform(frame, history["count"])
    np.testing.assert_array_equal(at_fit, features.transform(frame))
    # a training row's level uses only the weeks before its own week: its own count is unused
    changed = history["count"].copy()
    last_week = history["timestamp"] > history["timestamp"].max() - pd.Timedelta(days=7)
    changed[last_week] = 10_000.0
    other = ForecastFeatures().fit(frame, changed).transform(frame)
    level = FORECAST_FEATURE_NAMES.index("recent_level")
    np.testing.assert_array_equal(
        other[last_week.to_numpy(), level], at_fit[last_week.to_numpy(), level]
    )


def test_a_public_holiday_takes_the_level_of_a_sunday(history) -> None:
    features = ForecastFeatures().fit(history[["counter_id", "timestamp"]], history["count"])
    # Easter Monday 2024-04-01 08:00 Paris vs Sunday 03-31 and Monday 03-25, all after the
    # training data (which ends 2024-03-17)
    rows = pd.DataFrame(
        {
            "counter_id": [COUNTERS[1]] * 3,
            "timestamp": pd.to_datetime(
                ["2024-04-01T08:00+02:00", "2024-03-31T08:00+02:00", "2024-03-25T08:00+01:00"],
                utc=True,  # two offsets (DST starts on 03-31): same instants, one UTC dtype
            ),
        }
    )
    x = features.transform(rows)
    level = x[:, FORECAST_FEATURE_NAMES.index("recent_level")]
    assert x[0, FORECAST_FEATURE_NAMES.index("public_holiday")] == 1.0
    assert level[0] == level[1]  # the holiday Monday looks like a Sunday
    assert level[2] > 2 * level[0]  # a normal Monday morning is busier


def test_month_and_day_of_year_are_blanked_with_less_than_a_year(history) -> None:
    x = (
        ForecastFeatures()
        .fit(history[["counter_id", "timestamp"]], history["count"])
        .transform(future_rows(history))
    )
    for name in ("month", "day_of_year"):
        assert np.unique(x[:, FORECAST_FEATURE_NAMES.index(name)]).tolist() == [0.0]
    raw = ForecastFeatures(annual="raw").fit(history[["counter_id", "timestamp"]], history["count"])
    assert raw.transform(future_rows(history))[0, FORECAST_FEATURE_NAMES.index("month")] == 3.0


def test_short_history_has_no_level_and_the_model_predicts_alone() -> None:
    short = counts(weeks=3)
    features = ForecastFeatures().fit(short[["counter_id", "timestamp"]], short["count"])
    x = features.transform(future_rows(short))
    for name in ("recent_level", "pooled_level", "recent_counter_level", "profile_level"):
        assert (x[:, FORECAST_FEATURE_NAMES.index(name)] == NO_LEVEL).all()
    pipeline = fit_pipeline(build_pipeline(FAST), short, FAST)
    model_alone = pipeline.named_steps["model"].regressor_.predict(x)
    np.testing.assert_allclose(pipeline.predict(future_rows(short)), model_alone)


def test_outage_days_are_whole_zero_days_of_one_counter() -> None:
    frame = counts(weeks=1)
    day = frame["timestamp"].dt.tz_convert("Europe/Paris").dt.date == START.date()
    broken = day & (frame["counter_id"] == COUNTERS[0])
    frame.loc[broken, "count"] = 0.0
    frame.loc[day & (frame["counter_id"] == COUNTERS[1]), "count"] = 0.0
    frame.loc[day & (frame["counter_id"] == COUNTERS[1]) & (frame.index % 24 == 8), "count"] = 1.0
    np.testing.assert_array_equal(outage_days(frame), broken.to_numpy())


def test_recency_weights_halve_every_half_life() -> None:
    stamps = pd.Series(
        pd.to_datetime(["2024-01-01T00:00Z", "2024-01-29T00:00Z", "2024-02-26T00:00Z"])
    )
    np.testing.assert_allclose(recency_weights(stamps, 28.0), [0.25, 0.5, 1.0])
    assert recency_weights(stamps, None) is None


# --- seasonal naive --------------------------------------------------------------------------
def test_seasonal_naive_is_the_median_of_the_4_weeks_before(history) -> None:
    test = future_rows(history, hours=3).assign(count=0.0)
    start = test["timestamp"].min()
    # by hand: the same counter at the same hour-of-week 1..4 weeks earlier
    expected = []
    for _, row in test.iterrows():
        same = [row["timestamp"] - pd.Timedelta(weeks=w) for w in (1, 2, 3, 4)]
        values = history[
            (history["counter_id"] == row["counter_id"]) & history["timestamp"].isin(same)
        ]["count"]
        assert len(values) == 4
        expected.append(float(np.median(values)))
    np.testing.assert_allclose(seasonal_naive(history, test), expected)
    assert start > history["timestamp"].max()


def test_seasonal_naive_ignores_rows_inside_or_after_the_window(history) -> None:
    test = future_rows(history, hours=7 * 24).assign(count=1.0)
    before = seasonal_naive(history, test)
    leaked = pd.concat([history, test.assign(count=1e6)], ignore_index=True)
    np.testing.assert_array_equal(seasonal_naive(leaked, test), before)
    # and older than 4 weeks does not matter either
    old = history["timestamp"] < test["timestamp"].min() - pd.Timedelta(weeks=4)
    np.testing.assert_array_equal(seasonal_naive(history.loc[~old], test), before)


# --- metrics ---------------------------------------------------------------------------------
def test_score_against_hand_computed_values() -> None:
    s = score([0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 5.0])
    assert s["rmse"] == pytest.approx(1.0)  # sqrt(4 / 4)
    assert s["mae"] == pytest.approx(0.5)  # 2 / 4
    assert s["r2"] == pytest.approx(0.2)  # 1 - 4 / 5 (sum of squares around the mean 1.5: 5)
    assert s["rmse_log1p"] == pytest.approx(np.log(6 / 4) / 2)  # sqrt((ln 6 - ln 4)^2 / 4)
    assert s["rows"] == 4.0


def test_score_clips_negative_predictions_and_handles_empty() -> None:
    assert score([0.0, 2.0], [-3.0, 2.0])["mae"] == pytest.approx(0.0)
    empty = score([], [])
    assert empty["rows"] == 0.0 and np.isnan(empty["rmse"]) and np.isnan(empty["r2"])


def test_mae_per_counter_by_hand() -> None:
    got = mae_per_counter(["a", "b", "a", "b"], [1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 1.0, 0.0])
    assert got == {"a": pytest.approx(1.5), "b": pytest.approx(2.0)}
