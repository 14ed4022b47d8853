"""Settings: one place, every variable documented, bad values named."""

import re
from pathlib import Path

import pytest

from bike_assets.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_are_the_offline_laptop_setup(tmp_path: Path) -> None:
    settings = Settings.from_env({"BIKE_DATA_DIR": str(tmp_path)})
    assert (settings.env, settings.source) == ("local", "synthetic")
    assert settings.paris_url == "https://opendata.paris.fr"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.champion_pointer_uri == str(tmp_path / "champion.json")
    assert settings.api_key == ""  # admin endpoints disabled unless a key is set
    assert settings.thresholds.baseline_r2_floor == 0.60
    assert settings.thresholds.promotion_tolerance == 0.01


def test_gcp_pointer_lives_on_gcs_and_needs_its_bucket() -> None:
    settings = Settings.from_env({"BIKE_ENV": "gcp", "GCS_BUCKET": "b", "GCP_PROJECT": "p"})
    assert settings.champion_pointer_uri == "gs://b/bike-traffic/champion.json"
    with pytest.raises(SettingsError, match="GCS_BUCKET"):
        Settings.from_env({"BIKE_ENV": "gcp", "GCP_PROJECT": "p"}).validate_for_gcp()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BIKE_ENV", "aws"),
        ("BIKE_SOURCE", "csv"),
        ("PROMOTION_TOLERANCE", "two"),
        ("BIKE_MAX_RECORDS", "1.5"),
        ("BIKE_SYNTHETIC_DRIFT_DATE", "tomorrow"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_every_variable_read_is_documented_in_env_example() -> None:
    source = (ROOT / "bike_assets" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.get)?\(?,? ?"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'\(\s*env,\s*"([A-Z][A-Z0-9_]+)"', source))
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    assert read, "the pattern found no variable: the test would prove nothing"
    assert read <= documented, sorted(read - documented)


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("BIKE_MAX_RECORDS", "-5", "between 1 and"),
        ("BIKE_MAX_RECORDS", "0", "between 1 and"),
        ("BIKE_MAX_RECORDS", "100000000", "between 1 and"),
        ("BIKE_RELOAD_INTERVAL", "nan", "between"),
        ("BIKE_RELOAD_INTERVAL", "inf", "between"),
        ("BIKE_RELOAD_INTERVAL", "0", "between"),
        ("BIKE_RELOAD_INTERVAL", "-1", "between"),
        ("BIKE_FORECAST_CACHE_DAYS", "100000", "between 0 and 62"),
        ("BIKE_FORECAST_CACHE_DAYS", "-1", "between 0 and 62"),
        ("BIKE_API_KEY", "x", "at least 16"),
    ],
)
def test_serving_settings_out_of_range_are_refused_by_name(
    name: str, value: str, words: str
) -> None:
    """Issue #13 point 7: these values used to be accepted (NaN interval: no reload ever)."""
    with pytest.raises(SettingsError, match=name) as raised:
        Settings.from_env({name: value})
    assert words in str(raised.value)


def test_serving_settings_bounds_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "BIKE_MAX_RECORDS": "1",
            "BIKE_RELOAD_INTERVAL": "0.5",
            "BIKE_FORECAST_CACHE_DAYS": "0",
            "BIKE_API_KEY": "k" * 16,
        }
    )
    assert (settings.max_records, settings.reload_interval_s) == (1, 0.5)
    assert (settings.forecast_cache_days, settings.api_key) == (0, "k" * 16)
