"""`build_definitions(settings)` is the one reader of the environment for the code location."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path

import pytest

from bike_assets.definitions import build_definitions
from bike_assets.settings import Settings, Thresholds

PACKAGE = Path(__file__).resolve().parents[1] / "bike_assets"
# Entry points read the environment (that is their job); the code location's modules do not.
# resources/factory.py: builds the resources from the settings, and asks the environment only
# whether a value came from a variable (then the UI shows its name, not the value).
READERS = {"settings.py", "definitions.py", "cli.py", "stack.py", "factory.py"}


@pytest.mark.parametrize(
    ("env", "kind", "expr"),
    [("local", "duckdb", "timezone('Europe/Paris', "), ("gcp", "bigquery", "DATETIME(")],
)
def test_storage_metadata_follows_the_settings_given(
    tmp_path: Path, env: str, kind: str, expr: str
) -> None:
    settings = dataclasses.replace(
        Settings.from_env({"BIKE_DATA_DIR": str(tmp_path)}),
        env=env,  # type: ignore[arg-type]
        gcp_project="p",
        gcs_bucket="b",
    )
    defs = build_definitions(settings)
    for key, column in (("raw_counts", "timestamp"), ("predictions", "issued_at")):
        (spec,) = defs.get_assets_def(key).specs
        assert kind in spec.kinds and not {"duckdb", "bigquery"} - {kind} & spec.kinds
        assert spec.metadata["partition_expr"].startswith(expr)
        assert column in spec.metadata["partition_expr"]


def test_partitions_start_on_the_settings_day(tmp_path: Path) -> None:
    start = date(2024, 3, 1)
    settings = dataclasses.replace(
        Settings.from_env({"BIKE_DATA_DIR": str(tmp_path)}), partitions_start=start
    )
    defs = build_definitions(settings)
    first = {
        key: defs.get_assets_def(key).partitions_def.get_first_partition_key()  # type: ignore[union-attr]
        for key in ("raw_counts", "predictions")
    }
    assert first == {"raw_counts": "2024-03-01", "predictions": "2024-03-02"}
    # the checks of raw_counts are partitioned like it, and the ingest job and its schedule too
    (checks,) = [c for c in defs.asset_checks or [] if c.node_def.name == "raw_counts_checks"]
    assert {spec.partitions_def for spec in checks.check_specs} == {
        defs.get_assets_def("raw_counts").partitions_def
    }
    job = defs.resolve_job_def("ingest_job")
    assert job.partitions_def is not None
    assert job.partitions_def.get_first_partition_key() == "2024-03-01"


def test_thresholds_reach_the_assets_as_a_resource(tmp_path: Path) -> None:
    thresholds = Thresholds(drift_warning=0.42, promotion_tolerance=0.03)
    settings = dataclasses.replace(
        Settings.from_env({"BIKE_DATA_DIR": str(tmp_path)}), thresholds=thresholds
    )
    resource = build_definitions(settings).resources["decision_thresholds"]
    assert resource.values() == thresholds


def test_no_module_of_the_code_location_reads_the_environment_itself() -> None:
    readers = re.compile(r"Settings\.from_env\(|os\.environ\.get\(|os\.environ\[|os\.getenv")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in READERS
        and "demo" not in path.parts
        and not path.name.startswith("demo_")
        and readers.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
