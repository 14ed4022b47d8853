"""measure_drift on a small deterministic city generated here (not the project's synthetic source).

The city: counters with their own level (log-normal) and commuter/leisure mix, Paris-local
weekday commuter peaks and weekend afternoons, a gentle annual season, a daily weather factor
shared by all counters, Poisson counts. "Unchanged" = the same generator in other weeks of the
same season; "level shift" = most counters lose 45 % of their traffic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bike_assets.monitoring.drift import (
    MONITORED_COLUMNS,
    RELATIVE_COLUMNS,
    DriftResult,
    measure_drift,
)

N_COUNTERS = 40
REFERENCE_START = "2024-05-13"  # 4 weeks, Monday to Sunday
CURRENT_START = "2024-06-10"  # the following week: same season


def city(
    start: str,
    days: int,
    *,
    seed: int,
    n_counters: int = N_COUNTERS,
    shifted_share: float = 0.0,
    shift_factor: float = 1.0,
) -> pd.DataFrame:
    """Tidy hourly counts. Counter identities (level, profile) do not depend on `seed`."""
    identity = np.random.default_rng(2024)
    base = identity.lognormal(math.log(120), 0.6, n_counters)
    commuter = identity.uniform(0.6, 1.4, n_counters)
    rng = np.random.default_rng(seed)

    local = pd.date_range(pd.Timestamp(start, tz="Europe/Paris"), periods=days * 24, freq="h")
    hour = local.hour.to_numpy()
    workday = local.weekday.to_numpy() < 5
    commute = np.exp(-0.5 * ((hour - 8.5) / 1.0) ** 2) + 0.9 * np.exp(
        -0.5 * ((hour - 18) / 1.2) ** 2
    )
    afternoon = np.exp(-0.5 * ((hour - 14) / 3.5) ** 2)
    profile = np.where(workday, 0.05 + commute + 0.35 * afternoon, 0.05 + 0.7 * afternoon)
    season = 1 + 0.2 * np.cos(2 * np.pi * (local.dayofyear.to_numpy() - 170) / 365)
    day_index = (local.normalize() - local.normalize()[0]).days.to_numpy()
    weather = rng.lognormal(0.0, 0.10, days)[day_index]

    rate = base[:, None] * profile[None, :] ** commuter[:, None] * (season * weather)[None, :]
    if shifted_share > 0:
        shifted = identity.permutation(n_counters)[: round(shifted_share * n_counters)]
        rate[shifted] *= shift_factor
    counts = rng.poisson(rate).astype("int64")

    ids = np.array([f"10000{i:03d}-1" for i in range(n_counters)], dtype=object)
    n_hours = len(local)
    frame = pd.DataFrame(
        {
            "counter_id": np.repeat(ids, n_hours),
            "counter_name": np.repeat([f"Counter {i}" for i in range(n_counters)], n_hours),
            "site_id": np.repeat([f"10000{i:03d}" for i in range(n_counters)], n_hours),
            "site_name": np.repeat([f"Site {i}" for i in range(n_counters)], n_hours),
            "timestamp": np.tile(local.tz_convert("UTC"), n_counters),
            "count": counts.ravel(),
            "lat": 48.86,
            "lon": 2.35,
            "installation_date": "2019-01-01",
        }
    )
    for col in ("counter_id", "counter_name", "site_id", "site_name", "installation_date"):
        frame[col] = frame[col].astype("string")
    return frame


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return city(REFERENCE_START, 28, seed=1)


@pytest.fixture(scope="module")
def html_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("drift") / "reports" / "drift.html"  # parent made on the way


@pytest.fixture(scope="module")
def unchanged(reference: pd.DataFrame, html_path: Path) -> DriftResult:
    return measure_drift(reference, city(CURRENT_START, 7, seed=2), html_path=html_path)


@pytest.fixture(scope="module")
def shifted(reference: pd.DataFrame) -> DriftResult:
    current = city(CURRENT_START, 7, seed=2, shifted_share=0.75, shift_factor=0.55)
    return measure_drift(reference, current)


def test_level_shift_on_most_counters_is_detected(shifted: DriftResult) -> None:
    assert shifted.state == "computed", shifted.reason
    assert shifted.share is not None
    assert shifted.share >= 0.5
    # the target views moved, the inputs the model sees did not
    for column in ("count", *RELATIVE_COLUMNS):
        assert shifted.columns[column]["drifted"], (column, shifted.columns[column])
    for column in ("counter_id", "hour", "weekday"):
        assert not shifted.columns[column]["drifted"], (column, shifted.columns[column])


def test_unchanged_process_is_not_drift(unchanged: DriftResult) -> None:
    assert unchanged.state == "computed", unchanged.reason
    assert unchanged.share is not None
    assert unchanged.share < 0.3


def test_a_city_wide_change_moves_only_the_raw_count(reference: pd.DataFrame) -> None:
    """Season or weather: every counter +40 %. Only `count` may move, never the share."""
    current = city(CURRENT_START, 7, seed=2, shifted_share=1.0, shift_factor=1.4)
    result = measure_drift(reference, current)
    assert result.state == "computed", result.reason
    assert result.columns["count"]["drifted"]
    assert result.share is not None
    assert result.share <= 1 / 9 + 1e-9


def test_result_shape(shifted: DriftResult) -> None:
    assert shifted.n_columns == len(MONITORED_COLUMNS) == 9
    assert set(shifted.columns) == set(MONITORED_COLUMNS)
    assert shifted.drifted_columns == sum(c["drifted"] for c in shifted.columns.values())
    assert shifted.share == pytest.approx(shifted.drifted_columns / shifted.n_columns)
    assert shifted.reference_rows == 20_000  # 28 days x 40 counters = 26,880, capped
    assert shifted.current_rows == 7 * 24 * N_COUNTERS
    assert shifted.html_path is None  # no html_path given
    assert shifted.skipped_columns == ()
    as_dict = shifted.to_dict()
    assert as_dict["state"] == "computed"
    assert as_dict["columns"]["count"].keys() >= {"score", "method", "drifted"}
    assert as_dict["columns"]["hour"]["method"] == "jensenshannon"


def test_month_and_day_of_year_are_not_monitored(shifted: DriftResult) -> None:
    # they drift by construction between a multi-week reference and one week
    assert not {"month", "day_of_year", "hour_of_week"} & set(shifted.columns)


def test_html_report_saved(unchanged: DriftResult, html_path: Path) -> None:
    assert unchanged.html_path == str(html_path)
    assert html_path.stat().st_size > 10_000
    assert "<html" in html_path.read_text(encoding="utf-8")[:2000].lower()


def test_reference_sample_is_seeded(reference: pd.DataFrame, unchanged: DriftResult) -> None:
    # Same seed and cap as the fixture (the defaults), no HTML: exactly the same scores.
    again = measure_drift(reference, city(CURRENT_START, 7, seed=2))
    assert again.columns == unchanged.columns
    assert again.html_path is None


def test_empty_current_window_is_not_computed(reference: pd.DataFrame) -> None:
    result = measure_drift(reference, reference.iloc[0:0])
    assert result.state == "not_computed"
    assert result.reason is not None
    assert "current" in result.reason
    assert "empty" in result.reason
    assert result.share is None
    assert result.drifted_columns is None
    assert result.columns == {}
    assert result.to_dict()["share"] is None


def test_empty_reference_is_not_computed() -> None:
    current = city(CURRENT_START, 1, seed=2, n_counters=3)
    result = measure_drift(current.iloc[0:0], current)
    assert result.state == "not_computed"
    assert "reference" in (result.reason or "")


def test_bad_inputs_are_not_computed_never_raised() -> None:
    current = city(CURRENT_START, 1, seed=2, n_counters=3)
    naive = current.assign(timestamp=current["timestamp"].dt.tz_localize(None))
    result = measure_drift(naive, current)
    assert result.state == "not_computed"
    assert "timezone" in (result.reason or "")
    missing = measure_drift(current.drop(columns="count"), current)
    assert missing.state == "not_computed"
    assert "count" in (missing.reason or "")


def test_constant_columns_computed_without_crash(tmp_path: Path) -> None:
    """One counter counting exactly 5 bikes every hour in both windows.

    What happens: every column is constant and identical on both sides. Evidently measures it
    (normed Wasserstein divides by max(std, 0.001), Jensen-Shannon of one category is 0), so the
    result is computed with share 0 and nothing drifted; the HTML report renders too.
    """
    reference = city(REFERENCE_START, 14, seed=1, n_counters=1).assign(count=5)
    current = city(CURRENT_START, 7, seed=2, n_counters=1).assign(count=5)
    result = measure_drift(reference, current, html_path=tmp_path / "constant.html")
    assert result.state == "computed", result.reason
    assert result.share == 0.0
    assert not any(c["drifted"] for c in result.columns.values())
    assert result.html_path is not None


def test_counter_that_counts_nothing_is_not_normalised() -> None:
    """All-zero reference: no level to divide by, so the relative columns are skipped."""
    reference = city(REFERENCE_START, 14, seed=1, n_counters=2).assign(count=0)
    current = city(CURRENT_START, 7, seed=2, n_counters=2)
    result = measure_drift(reference, current)
    assert result.state == "computed", result.reason
    assert set(result.skipped_columns) == set(RELATIVE_COLUMNS)
    assert result.n_columns == 4
    assert result.columns["count"]["drifted"]  # from always 0 to real traffic


def test_an_evidently_failure_is_not_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evidently itself is replaced here (not measure_drift): its exceptions become a reason."""
    import bike_assets.monitoring.drift as drift

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evidently exploded")

    monkeypatch.setattr(drift, "_run_evidently", broken)
    current = city(CURRENT_START, 2, seed=2, n_counters=3)
    result = measure_drift(city(REFERENCE_START, 14, seed=1, n_counters=3), current)
    assert result.state == "not_computed"
    assert result.reason == "evidently failed: RuntimeError: evidently exploded"
    assert result.current_rows == len(current)
