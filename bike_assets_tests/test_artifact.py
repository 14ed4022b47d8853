"""The model file (skops): round trip for every model kind, atomic write, and which types a file
may contain to be loaded (skops' defaults, the project's classes found in the file, vetted ones)."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from skops.io.exceptions import UntrustedTypesFoundException

from bike_assets.ml.artifact import (
    ARTIFACT_SUFFIX,
    load_pipeline,
    load_pipeline_uri,
    save_pipeline,
    trusted_types,
)
from bike_assets.ml.features import INPUT_COLUMNS
from bike_assets.ml.model import ModelKind, ModelParams, build_pipeline, predict_counts
from bike_assets_tests.serving_fixtures import synthetic_counts, trained


class Doubler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """A harmless transformer that is NOT part of bike_assets.ml: a file holding it is refused."""

    def fit(self, X: object, y: object = None) -> Doubler:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X) * 2


class Unsaveable(BaseEstimator):  # type: ignore[misc]
    def __getstate__(self) -> dict[str, object]:
        raise RuntimeError("cannot be saved")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_counts(n_counters=3, days=14)


# Every kind the model offers today and tomorrow (the lifecycle work adds kinds): none may need
# a type that load_pipeline refuses.
@pytest.mark.parametrize("kind", typing.get_args(ModelKind))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 10 iterations: fast
def test_every_model_kind_round_trips_with_identical_predictions(
    tmp_path: Path, frame: pd.DataFrame, kind: str
) -> None:
    params = ModelParams(kind=kind, max_iter=10, n_estimators=5, max_depth=4)  # type: ignore[arg-type]
    pipeline = build_pipeline(params).fit(frame.loc[:, INPUT_COLUMNS], frame["count"])
    path = save_pipeline(pipeline, tmp_path / "v1" / f"model{ARTIFACT_SUFFIX}")
    loaded = load_pipeline(path)
    assert isinstance(loaded, Pipeline)
    # not bit-equal: a random forest sums its trees in threads, in no fixed order
    np.testing.assert_allclose(
        predict_counts(loaded, frame), predict_counts(pipeline, frame), rtol=1e-12
    )


def test_the_default_model_needs_project_and_vetted_types_only(tmp_path: Path) -> None:
    path = save_pipeline(trained("1"), tmp_path / f"model{ARTIFACT_SUFFIX}")
    found = sio.get_untrusted_types(file=path)
    # the project's classes are found in the file, not listed by hand
    assert "bike_assets.ml.features.ForecastFeatures" in found
    assert trusted_types(found) == sorted(found)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "models" / "v1" / f"model{ARTIFACT_SUFFIX}"
    save_pipeline(trained("1"), path)
    save_pipeline(trained("2"), path)  # replaces the first in one rename
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a server running as another user
    frame = synthetic_counts(days=2)
    np.testing.assert_array_equal(
        predict_counts(load_pipeline(path), frame), predict_counts(trained("2"), frame)
    )


def test_a_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = save_pipeline(trained("1"), tmp_path / f"model{ARTIFACT_SUFFIX}")
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot be saved"):
        save_pipeline(Pipeline([("model", Unsaveable())]), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_every_estimator_defined_in_the_ml_package_is_trusted() -> None:
    """Found by walking the package, so one added tomorrow (a seasonal naive, ...) is covered."""
    import bike_assets.ml

    names = []
    for info in pkgutil.iter_modules(bike_assets.ml.__path__, "bike_assets.ml."):
        if info.name == "bike_assets.ml.mlflow_model":
            continue  # MLflow's entry point, not a library module (importing it registers it)
        module = importlib.import_module(info.name)
        names += [
            f"{info.name}.{name}"
            for name, cls in inspect.getmembers(module, inspect.isclass)
            if cls.__module__ == info.name and issubclass(cls, BaseEstimator)
        ]
    assert "bike_assets.ml.features.ForecastFeatures" in names
    assert trusted_types(names) == sorted(names)


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("bike_assets.ml.features.ForecastFeatures", True),
        ("bike_assets.ml.model.RecentLevelRegressor", True),
        # a function of the project (it writes files): never
        ("bike_assets.ml.pointer.write_pointer", False),
        # imported into a project module, defined elsewhere: judged where it is defined
        ("bike_assets.ml.model.Pipeline", False),
        ("bike_assets.ml.no_such_module.Model", False),
        ("bike_assets.resources.tracking.MlflowTracking", False),
        ("bike_assets_tests.test_artifact.Doubler", False),
        ("builtins.eval", False),
        ("posix.system", False),
        ("sklearn.tree._tree.Tree", True),
    ],
)
def test_trusted_types(name: str, trusted: bool) -> None:
    assert trusted_types([name]) == ([name] if trusted else [])


@pytest.mark.parametrize(
    "step",
    [
        Doubler(),
        FunctionTransformer(func=os.system),
        # `partial` is vetted, but what it wraps is checked on its own
        FunctionTransformer(func=functools.partial(os.system, "true")),
    ],
    ids=["foreign class", "os function", "partial of an os function"],
)
def test_a_file_with_an_untrusted_type_is_refused(tmp_path: Path, step: object) -> None:
    pipeline = Pipeline([("step", step), ("model", HistGradientBoostingRegressor())])
    path = tmp_path / f"model{ARTIFACT_SUFFIX}"
    sio.dump(pipeline, path)
    with pytest.raises(UntrustedTypesFoundException):
        load_pipeline(path)


def test_a_file_without_a_pipeline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / f"model{ARTIFACT_SUFFIX}"
    sio.dump({"a": "dict"}, path)
    with pytest.raises(TypeError, match="does not hold a sklearn Pipeline"):
        load_pipeline(path)


def test_a_pickle_is_not_read(tmp_path: Path) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(trained("1"), path)
    with pytest.raises(Exception, match="zip file"):  # skops files are zip archives
        load_pipeline(path)


def test_load_pipeline_uri_reads_paths_and_file_uris(tmp_path: Path, frame: pd.DataFrame) -> None:
    path = save_pipeline(trained("1"), tmp_path / f"model{ARTIFACT_SUFFIX}")
    expected = predict_counts(trained("1"), frame)
    for uri in (str(path), path.as_uri()):
        np.testing.assert_array_equal(predict_counts(load_pipeline_uri(uri), frame), expected)
