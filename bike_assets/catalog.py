"""The catalog a person reads in the Dagster UI, applied to every asset in one place (#14).

`with_catalog(assets, settings)` returns the asset definitions with:

* **owners**: `BIKE_OWNER_TEAM` (default `team:mobility-data`) on every asset;
* **tags**: `domain`, `layer` (from the asset's group) and `pii: none` (public counter data)
  on every asset, so the catalog can be filtered by them;
* **column schemas** (`dagster/column_schema`) on every table asset, built from the one tidy
  schema of `bike_assets/schema.py` (tidy columns keep its dtype and meaning; a table's own
  columns are described here);
* **freshness policies** (`FreshnessPolicy`, Dagster's first-class freshness since 1.11; the
  freshness daemon evaluates them and the UI shows the result as the asset's health):

  - `raw_counts`: cron `0 3 * * *` Paris, lower bound 3 h: materialized between 00:00 and
    03:00 Paris, i.e. yesterday's Paris day ingested by 03:00 (the schedule runs at 02:00);
  - `champion`: time window of `RETRAIN_MAX_AGE_DAYS` (14 d), WARN one day before: a retrain
    decided about the champion (DEPLOY, SKIP or REJECT) within that window;
  - `champion_health`, `drift_report`: cron `0 6 * * 1` Paris, lower bound 6 h: materialized
    on Monday between 00:00 and 06:00 Paris, once the week is over (their automation condition
    starts them then).

* **code references** to the function that defines each asset (`with_source_code_references`),
  turned into links to the repository when `BIKE_CODE_GIT_URL` is set
  (`link_code_references_to_git`, branch `BIKE_CODE_GIT_BRANCH`).

Asset modules keep what they alone know (group, kinds, description, automation); everything
here is the same rule for every asset, so it lives beside the definitions, not in each module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

import bike_assets
from bike_assets.monitoring.forecast_history import FORECAST_COLUMNS
from bike_assets.schema import KEY_COLUMNS, TIDY_COLUMNS, TIDY_DESCRIPTIONS, TIDY_DTYPES
from bike_assets.settings import PARIS_TZ, Settings

DOMAIN = "mobility"
LAYERS = {  # group -> layer tag
    "ingestion": "source",
    "datasets": "dataset",
    "training": "model",
    "evaluation": "model",
    "serving": "model",
    "monitoring": "monitoring",
}
SPLIT_ROLES = {
    "train_baseline": "Training rows before the regression window.",
    "test_baseline": "The regression window: scored by every retrain, never trained on.",
    "train_current": "Training rows between the regression window and test_current.",
    "test_current": "The latest days: scored by every retrain.",
}

_UTC_NS = "datetime64[ns, UTC]"
COUNTERS_COLUMNS = [
    *(c for c in TIDY_COLUMNS if c not in ("timestamp", "count")),
    "first_seen",
    "last_seen",
    "rows",
]
COUNTERS_OWN = {
    "counter_name": ("string", "`nom_compteur` of the counter's latest row"),
    "first_seen": (_UTC_NS, "first counted hour in raw_counts"),
    "last_seen": (_UTC_NS, "last counted hour in raw_counts"),
    "rows": ("int64", "hours counted in raw_counts"),
}
# The predictions table's columns are FORECAST_COLUMNS (its contract lives with the code that
# writes it); their meanings are here. A column added there without a line here is still shown,
# as "see forecast_history.py", and test_catalog asks for its line.
PREDICTIONS_OWN = {
    "issued_at": (_UTC_NS, "start of the Paris issue day D (the partition)"),
    "timestamp": (_UTC_NS, "start of the forecast hour (UTC), in Paris days D..D+6"),
    "predicted_count": ("float64", "forecast bikes in that hour"),
    "lead_hours": ("int64", "hours from issued_at to timestamp"),
    "data_until": (_UTC_NS, "the hour after the last count the issue read (<= issued_at)"),
    "model_version": ("string", "registered MLflow version of the champion that issued it"),
    "model_kind": ("string", "model or naive"),
    "model_uri": ("string", "the champion's artifact (a daily level update changes it)"),
    "model_level_as_of": ("string", "last Paris day the champion's recent level had seen"),
    "model_seen_until": (_UTC_NS, "first hour the artifact had not seen (training or level)"),
    "created_at": (_UTC_NS, "when the partition was materialized"),
}
UNDESCRIBED = ("object", "see bike_assets/monitoring/forecast_history.py")


def table_schema(
    columns: Iterable[str] = TIDY_COLUMNS,
    extra: Mapping[str, tuple[str, str]] | None = None,
    unique_key: Iterable[str] = KEY_COLUMNS,
) -> dg.TableSchema:
    """A `dagster.TableSchema` of `columns`: tidy columns take their dtype and meaning from
    `schema.py`; a table's own columns come from `extra` (name -> (dtype, description));
    `unique_key` is stated as the table's constraint (one row per key).
    """
    own = dict(extra or {})
    fields = []
    for name in list(columns):
        if name in own:
            dtype, description = own[name]
        elif name in TIDY_DTYPES:
            dtype, description = TIDY_DTYPES[name], TIDY_DESCRIPTIONS[name]
        else:
            raise KeyError(f"column {name!r} is neither tidy nor described by the table")
        nullable = "nullable" in description  # schema.py's meanings say which columns are
        fields.append(
            dg.TableColumn(
                name,
                dtype,
                description=description,
                constraints=dg.TableColumnConstraints(nullable=nullable),
            )
        )
    key = list(unique_key)
    constraints = dg.TableConstraints(other=[f"one row per ({', '.join(key)})"]) if key else None
    return dg.TableSchema(columns=fields, constraints=constraints)


def column_schemas() -> dict[str, dg.TableSchema]:
    """Asset name -> its declared columns, for every table asset."""
    tidy = table_schema()
    return {
        "raw_counts": tidy,
        **dict.fromkeys(SPLIT_ROLES, tidy),
        "counters": table_schema(COUNTERS_COLUMNS, COUNTERS_OWN, unique_key=["counter_id"]),
        "predictions": table_schema(
            FORECAST_COLUMNS,
            {
                c: PREDICTIONS_OWN.get(c, UNDESCRIBED)
                for c in FORECAST_COLUMNS
                if c not in TIDY_COLUMNS or c in PREDICTIONS_OWN
            },
            unique_key=["issued_at", "counter_id", "timestamp"],
        ),
    }


def freshness_policies(settings: Settings) -> dict[str, dg.FreshnessPolicy]:
    """Asset name -> freshness policy (see the module docstring's table)."""
    max_age = timedelta(days=settings.retrain_max_age_days)
    warn = max_age - timedelta(days=1)
    weekly = dg.FreshnessPolicy.cron(
        deadline_cron="0 6 * * 1", lower_bound_delta=timedelta(hours=6), timezone=PARIS_TZ
    )
    return {
        # The 02:00 schedule ingests yesterday; a materialization after midnight Paris can hold
        # it. (The policy reads the latest materialization of any partition: a backfill of old
        # days after midnight also counts; the completeness check judges the day itself.)
        "raw_counts": dg.FreshnessPolicy.cron(
            deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=3), timezone=PARIS_TZ
        ),
        "champion": dg.FreshnessPolicy.time_window(
            fail_window=max_age, warn_window=warn if warn >= timedelta(minutes=1) else None
        ),
        "champion_health": weekly,
        "drift_report": weekly,
    }


def _spec_with_catalog(
    spec: dg.AssetSpec,
    owner: str,
    schemas: Mapping[str, dg.TableSchema],
    policies: Mapping[str, dg.FreshnessPolicy],
) -> dg.AssetSpec:
    name = spec.key.to_user_string()
    metadata: dict[str, Any] = {}
    if name in schemas:
        metadata["dagster/column_schema"] = schemas[name]
    description = spec.description or ""
    if name in SPLIT_ROLES:  # the multi-asset gives its four outputs one description
        description = f"{SPLIT_ROLES[name]} {description}".strip()
    out = spec.merge_attributes(
        owners=[owner],
        tags={"domain": DOMAIN, "layer": LAYERS.get(spec.group_name or "", "other"), "pii": "none"},
        metadata=metadata,
    ).replace_attributes(description=description or None)
    if name in policies:
        out = dg.apply_freshness_policy(out, policies[name])
    return out


def with_catalog(
    assets: Sequence[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    """`assets` with owners, tags, column schemas, freshness policies and code references."""
    schemas, policies = column_schemas(), freshness_policies(settings)
    mapped = dg.map_asset_specs(
        lambda spec: _spec_with_catalog(spec, settings.owner_team, schemas, policies), assets
    )
    # Both code-reference helpers are marked beta in 1.13; the choice to use them is made here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        referenced = dg.with_source_code_references(mapped)
        if settings.code_git_url:
            package_init = Path(bike_assets.__file__).resolve()
            referenced = dg.link_code_references_to_git(
                referenced,
                git_url=settings.code_git_url,
                git_branch=settings.code_git_branch,
                file_path_mapping=dg.AnchorBasedFilePathMapping(
                    local_file_anchor=package_init,
                    file_anchor_path_in_repository="bike_assets/__init__.py",
                ),
            )
    out = [a for a in referenced if isinstance(a, dg.AssetsDefinition)]
    assert len(out) == len(assets), "every asset definition comes back as one"
    return out
