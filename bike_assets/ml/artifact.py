"""The model file: a fitted sklearn `Pipeline` stored with skops, never with pickle.

Guarantees:
* `save_pipeline(pipeline, path)` writes atomically: a temporary file beside `path`, then one
  `replace`, so a reader (the server polling the champion pointer) sees the old file or the new
  one, never a half-written one.
* `load_pipeline(path)` executes no code from the file: skops rebuilds the objects from a schema
  and refuses any type that is not trusted (`UntrustedTypesFoundException`, naming the types).
  Trusted are skops' defaults (scikit-learn's estimators, numpy arrays, builtins), the classes
  *defined* in this project's `bike_assets.ml.*` modules, and `VETTED_TYPES` below. The project's
  classes are found in the file itself (`skops.io.get_untrusted_types`), then each name is
  imported and kept only if it resolves to a class defined in that module: a new estimator
  (e.g. a seasonal naive) is trusted without editing a list, a function such as
  `bike_assets.ml.pointer.write_pointer` never is.
* `load_pipeline` returns a `Pipeline` or raises `TypeError`.
* `load_pipeline_uri(uri)` reads a local path, a `file://` URI or a `gs://` object.

`ARTIFACT_SUFFIX` is the one place that names the file extension.
"""

from __future__ import annotations

import importlib
import inspect
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import skops.io as sio
from sklearn.pipeline import Pipeline

ARTIFACT_SUFFIX = ".skops"
PROJECT_PREFIX = "bike_assets.ml."

# Types outside skops' defaults that this project's pipelines contain, each read and judged
# inert: they hold fitted numbers or validate arrays, and none reaches the file system, the
# network or the interpreter.
VETTED_TYPES = frozenset(
    {
        # HistGradientBoosting's fitted trees (arrays of nodes)
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # HistGradientBoosting with categorical features: its internal ColumnTransformer holds
        # FunctionTransformer(func=partial(check_array, ...)). `partial` is safe to trust here
        # because skops checks the wrapped callable separately (it must be trusted too), and
        # `check_array` only validates its input.
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # RandomForest / decision trees
        "sklearn.tree._tree.Tree",
        # SimpleImputer (the mlp pipeline) keeps dtypes; skops rebuilds one as the dtype of an
        # empty array it reads with numpy's own format, without pickle
        "numpy.dtype",
        # MLPRegressor keeps its optimizer's state (learning rate, moments: arrays)
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    }
)


def _is_project_class(name: str) -> bool:
    """True if `name` is `bike_assets.ml.<module>.<Class>` and that class is defined there."""
    if not name.startswith(PROJECT_PREFIX):
        return False
    module_name, _, attr = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    obj = getattr(module, attr, None)
    return inspect.isclass(obj) and obj.__module__ == module_name


def trusted_types(untrusted: Iterable[str]) -> list[str]:
    """The subset of a file's non-default types that this project trusts."""
    return sorted(t for t in set(untrusted) if t in VETTED_TYPES or _is_project_class(t))


def save_pipeline(pipeline: Pipeline, path: Path) -> Path:
    """Write `pipeline` to `path` (parents created) atomically; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            sio.dump(pipeline, handle, compression=zipfile.ZIP_DEFLATED)
        # mkstemp creates 0600; the server may run as another user than the trainer
        tmp.chmod(0o644)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_pipeline(path: Path | str) -> Pipeline:
    """Read a pipeline written by `save_pipeline`, trusting only the types described above."""
    untrusted = sio.get_untrusted_types(file=path)
    loaded = sio.load(path, trusted=trusted_types(untrusted))
    if not isinstance(loaded, Pipeline):
        raise TypeError(f"{path} does not hold a sklearn Pipeline")
    return loaded


def load_pipeline_uri(uri: str) -> Pipeline:
    """Load a model file from a local path (or file:// URI) or a gs:// object."""
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, name = uri.removeprefix("gs://").partition("/")
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / f"model{ARTIFACT_SUFFIX}"
            storage.Client().bucket(bucket).blob(name).download_to_filename(str(local))
            return load_pipeline(local)
    return load_pipeline(uri.removeprefix("file://"))
