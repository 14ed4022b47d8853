"""Every setting of the platform, read from the environment in one place.

`bike_assets` (the Dagster code location) and `bike_serving` (the HTTP app) both build their
configuration from `Settings.from_env()`, so a value documented in `.env.example` means the same
thing everywhere. Nothing here has a secret default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

PARIS_TZ = "Europe/Paris"
DATASET_ID = "comptage-velo-donnees-compteurs"
REGISTERED_MODEL_NAME = "bike-counts"
# First Paris day of raw_counts unless BIKE_PARTITIONS_START says otherwise.
DEFAULT_PARTITIONS_START = date(2020, 1, 1)

# Bounds of the serving settings (checked by `Settings.validated`).
MAX_RECORDS_LIMIT = 1_000_000  # the body limit is ~256 bytes a record: 256 MB at most
MAX_FORECAST_CACHE_DAYS = 62  # 100 counters x 62 days is ~150,000 rows predicted at each load
MIN_API_KEY_CHARS = 16

Env = Literal["local", "gcp"]
SourceKind = Literal["synthetic", "paris"]


class SettingsError(ValueError):
    """A setting has a value the platform cannot use; the message names the variable."""


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc


def _within(name: str, value: float, low: float, high: float) -> None:
    """Refuse NaN, infinities and values outside [low, high], naming the variable."""
    if not low <= value <= high:  # NaN fails both comparisons
        raise SettingsError(f"{name}={value!r} must be between {low:g} and {high:g}")


def _date(env: Mapping[str, str], name: str, default: date | None) -> date | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a date (YYYY-MM-DD)") from exc


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (deployment and retraining), all overridable from the environment."""

    baseline_r2_floor: float = 0.60
    # at equal quality within this R² the challenger, trained on fresher data, wins
    promotion_tolerance: float = 0.01
    r2_critical: float = 0.45
    rmse_threshold: float = 90.0
    r2_warning: float = 0.55
    drift_critical: float = 0.5
    drift_warning: float = 0.3
    completeness_warn: float = 0.9
    # At most one sensor-requested retrain per this many days, unless forced (P0); <= 0 disables.
    retrain_cooldown_days: float = 7.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Thresholds:
        d = cls()
        return cls(
            baseline_r2_floor=_float(env, "BASELINE_R2_FLOOR", d.baseline_r2_floor),
            promotion_tolerance=_float(env, "PROMOTION_TOLERANCE", d.promotion_tolerance),
            r2_critical=_float(env, "R2_CRITICAL", d.r2_critical),
            rmse_threshold=_float(env, "RMSE_THRESHOLD", d.rmse_threshold),
            r2_warning=_float(env, "R2_WARNING", d.r2_warning),
            drift_critical=_float(env, "DRIFT_CRITICAL", d.drift_critical),
            drift_warning=_float(env, "DRIFT_WARNING", d.drift_warning),
            completeness_warn=_float(env, "COMPLETENESS_WARN", d.completeness_warn),
            retrain_cooldown_days=_float(env, "RETRAIN_COOLDOWN_DAYS", d.retrain_cooldown_days),
        )


@dataclass(frozen=True)
class Settings:
    env: Env = "local"
    data_dir: Path = Path("data")
    source: SourceKind = "synthetic"
    paris_url: str = "https://opendata.paris.fr"
    paris_timeout_s: float = 30.0
    paris_max_retries: int = 5
    paris_retry_budget_s: float = 120.0
    partitions_start: date = DEFAULT_PARTITIONS_START
    synthetic_seed: int = 42
    synthetic_counters: int = 80
    synthetic_drift_date: date | None = None
    synthetic_drift_kind: str = "level_shift"
    mlflow_tracking_uri: str = ""
    gcp_project: str = ""
    bq_dataset: str = "bike_traffic"
    gcs_bucket: str = ""
    gcs_prefix: str = "bike-traffic"
    discord_webhook_url: str = ""
    pushgateway_url: str = ""
    api_key: str = ""
    max_records: int = 50_000
    reload_interval_s: float = 30.0
    forecast_cache_days: int = 8
    dagster_graphql_url: str = ""  # bike_serving's admin controls start runs there
    # retrain_sensor's minimum interval between evaluations (seconds)
    retrain_sensor_interval_s: int = 60
    # The Dagster catalog (#14): who owns every asset, when the champion counts as stale, where
    # the UI links code and reports to. Empty URLs mean "not configured" (local paths/file://).
    owner_team: str = "team:mobility-data"
    retrain_max_age_days: float = 14.0
    code_git_url: str = ""
    code_git_branch: str = "main"
    reports_base_url: str = ""
    # the MLflow UI that shows this tracking store, when tracking goes straight to a database
    # (sqlite/Postgres): links then open there instead of the artifact folder
    mlflow_ui_url: str = ""
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("BIKE_DATA_DIR", "").strip() or "data").expanduser().resolve()
        start = _date(env, "BIKE_PARTITIONS_START", DEFAULT_PARTITIONS_START)
        assert start is not None
        return cls(
            env=_choice(env, "BIKE_ENV", "local", ("local", "gcp")),  # type: ignore[arg-type]
            data_dir=data_dir,
            source=_choice(env, "BIKE_SOURCE", "synthetic", ("synthetic", "paris")),  # type: ignore[arg-type]
            paris_url=env.get("PARIS_OPEN_DATA_URL", "").strip().rstrip("/")
            or "https://opendata.paris.fr",
            paris_timeout_s=_float(env, "PARIS_HTTP_TIMEOUT", 30.0),
            paris_max_retries=_int(env, "PARIS_MAX_RETRIES", 5),
            paris_retry_budget_s=_float(env, "PARIS_RETRY_BUDGET", 120.0),
            partitions_start=start,
            synthetic_seed=_int(env, "BIKE_SYNTHETIC_SEED", 42),
            synthetic_counters=_int(env, "BIKE_SYNTHETIC_COUNTERS", 80),
            synthetic_drift_date=_date(env, "BIKE_SYNTHETIC_DRIFT_DATE", None),
            synthetic_drift_kind=_choice(
                env, "BIKE_SYNTHETIC_DRIFT_KIND", "level_shift", ("level_shift", "broken_counter")
            ),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI", "").strip()
            or f"sqlite:///{data_dir / 'mlflow.db'}",
            gcp_project=env.get("GCP_PROJECT", "").strip(),
            bq_dataset=env.get("BQ_DATASET", "").strip() or "bike_traffic",
            gcs_bucket=env.get("GCS_BUCKET", "").strip(),
            gcs_prefix=env.get("GCS_PREFIX", "").strip().strip("/") or "bike-traffic",
            discord_webhook_url=env.get("DISCORD_WEBHOOK_URL", "").strip(),
            pushgateway_url=env.get("PROMETHEUS_PUSHGATEWAY_URL", "").strip(),
            api_key=env.get("BIKE_API_KEY", "").strip(),
            max_records=_int(env, "BIKE_MAX_RECORDS", 50_000),
            reload_interval_s=_float(env, "BIKE_RELOAD_INTERVAL", 30.0),
            forecast_cache_days=_int(env, "BIKE_FORECAST_CACHE_DAYS", 8),
            dagster_graphql_url=env.get("DAGSTER_GRAPHQL_URL", "").strip(),
            retrain_sensor_interval_s=_int(env, "BIKE_RETRAIN_SENSOR_INTERVAL", 60),
            owner_team=env.get("BIKE_OWNER_TEAM", "").strip() or "team:mobility-data",
            retrain_max_age_days=_float(env, "RETRAIN_MAX_AGE_DAYS", 14.0),
            code_git_url=env.get("BIKE_CODE_GIT_URL", "").strip().rstrip("/"),
            code_git_branch=env.get("BIKE_CODE_GIT_BRANCH", "").strip() or "main",
            reports_base_url=env.get("BIKE_REPORTS_URL", "").strip().rstrip("/"),
            mlflow_ui_url=env.get("MLFLOW_UI_URL", "").strip().rstrip("/"),
            thresholds=Thresholds.from_env(env),
        ).validated()

    def validated(self) -> Settings:
        """Range checks of the serving settings: a bad value stops the start with its name
        instead of being accepted (a NaN interval silently never reloads, a negative record
        limit refuses every request, 100,000 cache days never finish loading)."""
        _within("BIKE_MAX_RECORDS", self.max_records, 1, MAX_RECORDS_LIMIT)
        # finite and > 0: the pointer must be checked (NaN never wakes up, a day at most)
        _within("BIKE_RELOAD_INTERVAL", self.reload_interval_s, 0.01, 86_400)
        _within("BIKE_FORECAST_CACHE_DAYS", self.forecast_cache_days, 0, MAX_FORECAST_CACHE_DAYS)
        # Dagster accepts an owner only as an email or `team:<name>`; say so at start-up.
        if not (self.owner_team.startswith("team:") and len(self.owner_team) > 5) and (
            "@" not in self.owner_team
        ):
            raise SettingsError(
                f"BIKE_OWNER_TEAM={self.owner_team!r} must be `team:<name>` or an email address"
            )
        # The freshness policy needs at least a minute; more than a year is no policy at all.
        _within("RETRAIN_MAX_AGE_DAYS", self.retrain_max_age_days, 0.01, 366)
        if self.api_key and len(self.api_key) < MIN_API_KEY_CHARS:
            raise SettingsError(
                f"BIKE_API_KEY is {len(self.api_key)} characters long; use at least "
                f"{MIN_API_KEY_CHARS} (e.g. `openssl rand -hex 32`) or leave it empty to "
                "disable the admin endpoints"
            )
        return self

    def validate_for_gcp(self) -> None:
        missing = [
            name
            for name, value in (("GCP_PROJECT", self.gcp_project), ("GCS_BUCKET", self.gcs_bucket))
            if not value
        ]
        if missing:
            raise SettingsError(f"BIKE_ENV=gcp needs {', '.join(missing)} to be set")

    # Local layout under BIKE_DATA_DIR (see data/README.md).
    @property
    def warehouse_path(self) -> Path:
        return self.data_dir / "warehouse.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def model_store_root(self) -> str:
        """Where model files live; the pointer names them relative to this root."""
        if self.env == "gcp":
            return f"gs://{self.gcs_bucket}/{self.gcs_prefix}"
        return str(self.data_dir)

    @property
    def champion_pointer_uri(self) -> str:
        if self.env == "gcp":
            return f"gs://{self.gcs_bucket}/{self.gcs_prefix}/champion.json"
        return str(self.data_dir / "champion.json")
