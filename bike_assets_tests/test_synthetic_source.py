"""The offline source: deterministic, window-independent, tidy and Paris-shaped."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays
import pandas as pd
import pytest
from pydantic import ValidationError

from bike_assets.schema import KEY_COLUMNS, schema_problems
from bike_assets.settings import Settings
from bike_assets.sources.base import CountsBatch
from bike_assets.sources.synthetic import (
    MAX_COUNTERS,
    SyntheticCounts,
    drifted_counters,
    generate_counts,
    synthetic_counters,
)

PARIS = ZoneInfo("Europe/Paris")
SEED = 42
N = 40  # smaller than the default city keeps the suite fast; behaviour is per counter anyway


def paris(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=PARIS)


def local(frame: pd.DataFrame) -> pd.Series:
    return frame["timestamp"].dt.tz_convert(PARIS)


@pytest.fixture(scope="module")
def spring() -> pd.DataFrame:
    """Two months around the spring DST change, with holidays (Easter Monday, 1 and 8 May)."""
    return generate_counts(paris(2021, 3, 15), paris(2021, 5, 15), seed=SEED, n_counters=N)


# ------------------------------------------------------------------ determinism, window splits
def test_same_seed_same_frame_other_seed_other_frame() -> None:
    start, end = paris(2021, 6, 1), paris(2021, 6, 8)
    a = generate_counts(start, end, seed=SEED, n_counters=N)
    b = generate_counts(start, end, seed=SEED, n_counters=N)
    pd.testing.assert_frame_equal(a, b)

    other = generate_counts(start, end, seed=SEED + 1, n_counters=N)
    assert set(other["counter_id"]) != set(a["counter_id"])  # another city
    assert not other["count"].equals(a["count"])


def test_a_month_equals_its_days_fetched_one_by_one() -> None:
    source = SyntheticCounts(seed=SEED, n_counters=N, drift_date="2021-03-20")
    # March 2021 in Paris: contains the 23-hour DST day and the drift date
    month = source.fetch(paris(2021, 3, 1), paris(2021, 4, 1)).frame
    days = [
        source.fetch(paris(2021, 3, d), paris(2021, 3, d) + timedelta(days=1)).frame
        if d < 31
        else source.fetch(paris(2021, 3, 31), paris(2021, 4, 1)).frame
        for d in range(1, 32)
    ]
    joined = pd.concat(days, ignore_index=True).sort_values(KEY_COLUMNS).reset_index(drop=True)
    pd.testing.assert_frame_equal(month, joined)


def test_odd_window_boundaries_give_the_same_rows() -> None:
    # windows cut in the middle of Paris days, in UTC, 17 hours at a time: weather, outages and
    # gaps carry state across days, and must still not depend on where a window starts
    start = datetime(2021, 10, 25, 5, tzinfo=UTC)
    end = start + timedelta(days=10)
    whole = generate_counts(start, end, seed=SEED, n_counters=N)
    pieces = []
    cut = start
    while cut < end:
        nxt = min(cut + timedelta(hours=17), end)
        pieces.append(generate_counts(cut, nxt, seed=SEED, n_counters=N))
        cut = nxt
    joined = pd.concat(pieces, ignore_index=True).sort_values(KEY_COLUMNS).reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, joined)


def test_the_window_is_half_open_on_whole_hours() -> None:
    start = datetime(2021, 6, 1, 10, 30, tzinfo=UTC)
    end = datetime(2021, 6, 1, 13, 0, tzinfo=UTC)
    frame = generate_counts(start, end, seed=SEED, n_counters=N)
    hours = sorted(frame["timestamp"].dt.hour.unique())
    assert hours == [11, 12]  # 10:00 started before `start`, 13:00 is `end` itself
    assert generate_counts(end, end, seed=SEED, n_counters=N).empty


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_counts(datetime(2021, 6, 1), datetime(2021, 6, 2), seed=SEED, n_counters=N)


# ------------------------------------------------------------------ shape of the frame
def test_tidy_schema_and_keys(spring: pd.DataFrame) -> None:
    assert schema_problems(spring) == []
    assert (spring["count"] >= 0).all()
    assert not spring.duplicated(KEY_COLUMNS).any()
    assert spring["timestamp"].min() >= pd.Timestamp(paris(2021, 3, 15))
    assert spring["timestamp"].max() < pd.Timestamp(paris(2021, 5, 15))
    # every counter installed before the window is there (late installations may be absent)
    catalogue = synthetic_counters(SEED, N)
    installed = catalogue.loc[catalogue["installation_date"] < "2021-03-15", "counter_id"]
    assert set(installed) <= set(spring["counter_id"])
    assert set(spring["counter_id"]) <= set(catalogue["counter_id"])
    assert spring[["counter_name", "site_id", "lat", "lon"]].notna().all().all()


def test_counter_count_follows_the_configuration() -> None:
    day = (paris(2024, 6, 3), paris(2024, 6, 4))  # all synthetic counters installed by then
    for n in (1, 7, 80):
        frame = generate_counts(*day, seed=SEED, n_counters=n)
        assert frame["counter_id"].nunique() <= n
        assert frame["counter_id"].nunique() >= n - 1  # at most one counter in a day-long gap
    for bad in (0, MAX_COUNTERS + 1):
        with pytest.raises(ValueError, match="n_counters"):
            generate_counts(*day, seed=SEED, n_counters=bad)


@pytest.mark.parametrize(("day", "hours"), [(date(2021, 3, 28), 23), (date(2021, 10, 31), 25)])
def test_dst_days_have_23_and_25_hours(day: date, hours: int) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=PARIS)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=PARIS)
    frame = generate_counts(start, end, seed=SEED, n_counters=N)
    per_counter = frame.groupby("counter_id")["timestamp"].nunique()
    assert per_counter.max() == hours
    assert (per_counter == hours).mean() > 0.8  # the others lost hours to a random gap
    assert (local(frame).dt.date == day).all()


def test_catalogue_looks_like_paris() -> None:
    cat = synthetic_counters(SEED, 80)
    assert len(cat) == 80
    assert cat["counter_id"].is_unique
    assert cat["counter_id"].str.fullmatch(r"\d{9}-\d{9}").all()
    assert (cat["counter_id"].str.slice(0, 9) == cat["site_id"]).all()
    direction = r"(?:N|S|E|O|NE|NO|SE|SO)"
    assert cat["counter_name"].str.contains(rf" {direction}-{direction}$").all()
    assert all(
        name.startswith(site)
        for name, site in zip(cat["counter_name"], cat["site_name"], strict=True)
    )
    sites = cat.groupby("site_id").size()
    assert 35 <= len(sites) <= 50
    assert (sites == 1).any()
    assert (sites == 2).mean() > 0.7
    assert cat["lat"].between(48.82, 48.90).all()
    assert cat["lon"].between(2.25, 2.42).all()
    installed = pd.to_datetime(cat["installation_date"])
    assert installed.min() >= pd.Timestamp("2013-01-01")
    assert 1 <= (installed >= pd.Timestamp("2020-01-01")).sum() <= 8  # a couple of late ones
    # a smaller city is a part of the bigger one: counters keep their identity
    small = synthetic_counters(SEED, 52)
    assert set(small["counter_id"]) <= set(cat["counter_id"])


def test_a_counter_installed_late_is_absent_before_its_installation_date() -> None:
    cat = synthetic_counters(SEED, 80)
    late = cat.loc[cat["installation_date"] >= "2020-03-01"].iloc[0]
    installed = date.fromisoformat(str(late["installation_date"]))
    start = datetime.combine(installed - timedelta(days=3), datetime.min.time(), tzinfo=PARIS)
    frame = generate_counts(start, start + timedelta(days=6), seed=SEED, n_counters=80)
    rows = frame.loc[frame["counter_id"] == late["counter_id"]]
    assert not rows.empty
    assert (local(rows).dt.date >= installed).all()


def test_a_long_window_has_gaps_and_daytime_zeros() -> None:
    start, end = paris(2021, 1, 1), paris(2021, 5, 1)
    frame = generate_counts(start, end, seed=SEED, n_counters=N)
    hours = int((pd.Timestamp(end) - pd.Timestamp(start)) / pd.Timedelta(hours=1))
    rows = frame.groupby("counter_id").size()
    assert (rows < hours).any()  # some rows are absent
    assert rows.sum() > 0.9 * hours * N  # ... but not many
    day = frame.loc[local(frame).dt.hour.between(8, 19)]
    busy = day.groupby("counter_id")["count"].transform("mean") > 50
    assert ((day["count"] == 0) & busy).any()  # outages on busy counters, not just quiet ones


# ------------------------------------------------------------------ Paris-shaped traffic
def test_weekday_morning_peak_dwarfs_the_night(spring: pd.DataFrame) -> None:
    t = local(spring)
    weekday = t.dt.weekday < 5
    morning = spring.loc[weekday & t.dt.hour.isin([8, 9]), "count"].mean()
    night = spring.loc[weekday & (t.dt.hour == 3), "count"].mean()
    evening = spring.loc[weekday & t.dt.hour.isin([17, 18, 19]), "count"].mean()
    midday = spring.loc[weekday & t.dt.hour.isin([11, 14]), "count"].mean()
    assert morning > 10 * night
    assert evening > 1.5 * midday
    weekend = t.dt.weekday >= 5
    afternoon = spring.loc[weekend & t.dt.hour.isin([14, 15, 16]), "count"].mean()
    early = spring.loc[weekend & t.dt.hour.isin([7, 8]), "count"].mean()
    assert afternoon > 2 * early  # weekend afternoon hump, no commute


def test_public_holidays_are_quieter_than_working_days(spring: pd.DataFrame) -> None:
    days = local(spring).dt.date
    public = set(holidays.France(years=2021))
    school = set(holidays.France(years=2021, subdiv="Zone C", categories=("school",)))
    daily = spring.groupby(days)["count"].sum()
    weekdays = [d for d in daily.index if d.weekday() < 5]
    off = [d for d in weekdays if d in public]
    work = [d for d in weekdays if d not in public and d not in school]
    assert off  # Easter Monday is in the window
    assert daily[off].mean() < 0.75 * daily[work].mean()
    holiday_weeks = [d for d in weekdays if d in school and d not in public]
    assert daily[holiday_weeks].mean() < daily[work].mean()  # school holidays (zone C) lower


def test_speed_of_a_120_day_window() -> None:
    generate_counts(paris(2021, 1, 1), paris(2021, 1, 2), seed=SEED, n_counters=80)  # warm caches
    t0 = time.perf_counter()
    frame = generate_counts(paris(2021, 3, 1), paris(2021, 6, 29), seed=SEED, n_counters=80)
    elapsed = time.perf_counter() - t0
    assert len(frame) > 200_000
    assert elapsed < 3.0, f"120 days x 80 counters took {elapsed:.2f} s"  # ~0.2 s when idle


# ------------------------------------------------------------------ drift events
DRIFT_WINDOW = (paris(2021, 5, 17), paris(2021, 6, 14))
DRIFT_DATE = "2021-05-31"


@pytest.fixture(scope="module")
def no_drift() -> pd.DataFrame:
    return generate_counts(*DRIFT_WINDOW, seed=SEED, n_counters=N)


def split_at_drift(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    after = local(frame) >= pd.Timestamp(DRIFT_DATE, tz=PARIS)
    return frame.loc[~after].reset_index(drop=True), frame.loc[after].reset_index(drop=True)


def test_level_shift_changes_the_drifted_counters_after_the_date_only(
    no_drift: pd.DataFrame,
) -> None:
    drifted = drifted_counters(SEED, N, 0.4)
    assert len(drifted) == round(0.4 * N)
    frame = generate_counts(*DRIFT_WINDOW, seed=SEED, n_counters=N, drift_date=DRIFT_DATE)
    before, after = split_at_drift(frame)
    base_before, base_after = split_at_drift(no_drift)
    pd.testing.assert_frame_equal(before, base_before)  # nothing changes before the date

    is_drifted = after["counter_id"].isin(drifted)
    pd.testing.assert_frame_equal(  # nor for the counters that do not drift
        after.loc[~is_drifted].reset_index(drop=True),
        base_after.loc[~base_after["counter_id"].isin(drifted)].reset_index(drop=True),
    )
    ratio = (
        after.loc[is_drifted].groupby("counter_id")["count"].mean()
        / base_after.groupby("counter_id")["count"].mean()
    ).dropna()
    assert len(ratio) >= len(drifted) - 1
    assert ((ratio < 0.6) | (ratio > 1.5)).all(), ratio.round(2).to_dict()
    assert (ratio < 1).any()
    assert (ratio > 1).any()


def test_broken_counters_report_zeros_or_a_stuck_value(no_drift: pd.DataFrame) -> None:
    drifted = drifted_counters(SEED, N, 0.4)
    frame = generate_counts(
        *DRIFT_WINDOW, seed=SEED, n_counters=N, drift_date=DRIFT_DATE, drift_kind="broken_counter"
    )
    before, after = split_at_drift(frame)
    pd.testing.assert_frame_equal(before, split_at_drift(no_drift)[0])

    values = after.loc[after["counter_id"].isin(drifted)].groupby("counter_id")["count"]
    assert (values.nunique() == 1).all()  # one value, hour after hour
    assert (values.size() >= 24).all()
    stuck = values.first()
    assert (stuck == 0).any()
    assert (stuck > 0).any()
    healthy = after.loc[~after["counter_id"].isin(drifted)].groupby("counter_id")["count"]
    assert (healthy.nunique() > 10).all()


def test_drift_share_zero_means_no_drift(no_drift: pd.DataFrame) -> None:
    assert drifted_counters(SEED, N, 0.0) == []
    frame = generate_counts(
        *DRIFT_WINDOW, seed=SEED, n_counters=N, drift_date=DRIFT_DATE, drift_share=0.0
    )
    pd.testing.assert_frame_equal(frame, no_drift)


# ------------------------------------------------------------------ the Dagster resource
def test_resource_fetch_matches_the_pure_function() -> None:
    source = SyntheticCounts(
        seed=7, n_counters=12, drift_date="2021-06-03", drift_kind="broken_counter", drift_share=0.5
    )
    start, end = paris(2021, 6, 1), paris(2021, 6, 5)
    batch = source.fetch(start, end)
    assert isinstance(batch, CountsBatch)
    assert batch.dropped == 0
    expected = generate_counts(
        start,
        end,
        seed=7,
        n_counters=12,
        drift_date="2021-06-03",
        drift_kind="broken_counter",
        drift_share=0.5,
    )
    pd.testing.assert_frame_equal(batch.frame, expected)
    pd.testing.assert_frame_equal(source.counters(), synthetic_counters(7, 12))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_counters", 0),
        ("n_counters", 201),
        ("drift_kind", "meteor"),
        ("drift_date", "31/05/2021"),
        ("drift_share", 1.5),
    ],
)
def test_resource_refuses_bad_configuration(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        SyntheticCounts(**{field: value})


def test_resource_from_settings() -> None:
    settings = Settings.from_env(
        {
            "BIKE_SYNTHETIC_SEED": "3",
            "BIKE_SYNTHETIC_COUNTERS": "60",
            "BIKE_SYNTHETIC_DRIFT_DATE": "2021-05-31",
            "BIKE_SYNTHETIC_DRIFT_KIND": "broken_counter",
        }
    )
    source = SyntheticCounts.from_settings(settings)
    assert (source.seed, source.n_counters) == (3, 60)
    assert (source.drift_date, source.drift_kind) == ("2021-05-31", "broken_counter")
    defaults = SyntheticCounts()
    assert (defaults.seed, defaults.n_counters, defaults.drift_date) == (42, 80, None)
    assert defaults.drift_kind == "level_shift"
