"""Model files in the model store: where a URI may point, and the digest checked before loading.

Guarantees:
- A model URI written by the platform is relative to the store root (`BIKE_DATA_DIR` locally,
  `gs://bucket/prefix` on GCP) and carries the sha256 of the file computed when it was saved:
  `models/v12/model.skops#sha256=<64 hex>` (the `#sha256=` fragment is pip's convention for
  hashed links). The champion pointer stores that string as its `model_uri`, so the pointer
  carries the digest without a schema change, and a copied `data/` serves its own files.
- `load_artifact` reads only from inside the store root (no `..`, no absolute path or symlink
  leading out of it; an absolute path or gs:// URI is accepted only when it lies inside), and
  refuses to deserialize a file whose sha256 differs from the URI's, or a URI without a digest.
  The check hashes the bytes, whatever the file format (`save_pipeline` decides it).
- A digest is also written beside each file (`model.skops.sha256`) so that `uri_for(version)`
  can name an older version with the digest recorded when it was saved (rollbacks).

Why: a pickle runs code from the file, and even a restricted format (skops) should only ever be
handed the bytes this platform wrote, from the place it wrote them.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

T = TypeVar("T")
DIGEST_SUFFIX = ".sha256"
_FRAGMENT = "#sha256="
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ArtifactError(ValueError):
    """A model URI that must not be loaded: outside the store, no or wrong digest."""


@dataclass(frozen=True)
class ArtifactRef:
    """A model file as the pointer names it: a path relative to the store root + its digest."""

    path: str  # POSIX, relative, normalised: "models/v12/model.skops"
    sha256: str | None

    @property
    def uri(self) -> str:
        return self.path + (f"{_FRAGMENT}{self.sha256}" if self.sha256 else "")


def _is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def _relative_parts(path: str) -> PurePosixPath:
    """`path` as a normalised relative path that cannot climb out of the root."""
    if not path or "\\" in path or "\x00" in path:
        raise ArtifactError("a model path must be a non-empty POSIX path")
    posix = PurePosixPath(path)
    if posix.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise ArtifactError("the model file is outside the model store (absolute or '..' path)")
    return posix


def parse_uri(uri: str, root: str) -> ArtifactRef:
    """The store-relative reference of `uri` (relative, or absolute/gs:// inside `root`)."""
    location, sep, digest = uri.partition(_FRAGMENT)
    if sep and not _HEX64.fullmatch(digest):
        raise ArtifactError("the model digest must be 64 lowercase hex digits (sha256)")
    location = location.removeprefix("file://")
    if _is_gcs(location) or _is_gcs(root):
        prefix = root.rstrip("/") + "/"
        if _is_gcs(location):
            if not location.startswith(prefix):
                raise ArtifactError("the model file is outside the model store")
            location = location[len(prefix) :]
    elif os.path.isabs(location):
        base = Path(root).resolve()
        resolved = Path(location).resolve()
        if not resolved.is_relative_to(base):
            raise ArtifactError("the model file is outside the model store")
        location = resolved.relative_to(base).as_posix()
    return ArtifactRef(str(_relative_parts(location)), digest or None)


def locate(ref: ArtifactRef, root: str) -> str:
    """The absolute local path (symlinks resolved, checked inside the root) or gs:// URI."""
    if _is_gcs(root):
        return f"{root.rstrip('/')}/{ref.path}"
    base = Path(root).resolve()
    path = (base / ref.path).resolve()
    if not path.is_relative_to(base):  # a symlink inside the store leading out of it
        raise ArtifactError("the model file is outside the model store")
    return str(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _gcs_blob(uri: str):  # type: ignore[no-untyped-def]  # google-cloud-storage is untyped
    from google.cloud import storage  # only needed on GCP

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return storage.Client().bucket(bucket).blob(name)


def save_artifact(root: str, path: str, write: Callable[[Path], object]) -> str:
    """Write a file with `write(local_path)` at `path` under `root`; return its URI with the
    sha256 of the bytes written (also stored beside the file for `recorded_uri`)."""
    ref_path = str(_relative_parts(path))
    if _is_gcs(root):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / PurePosixPath(ref_path).name
            write(local)
            digest = sha256_of(local)
            blob_uri = locate(ArtifactRef(ref_path, None), root)
            _gcs_blob(blob_uri).upload_from_filename(str(local))
            _gcs_blob(blob_uri + DIGEST_SUFFIX).upload_from_string(digest)
        return ArtifactRef(ref_path, digest).uri
    target = Path(root) / ref_path
    target.parent.mkdir(parents=True, exist_ok=True)
    write(target)
    digest = sha256_of(target)
    sidecar = target.with_name(target.name + DIGEST_SUFFIX)
    tmp_sidecar = sidecar.with_name(sidecar.name + ".tmp")
    tmp_sidecar.write_text(digest, encoding="ascii")
    tmp_sidecar.replace(sidecar)
    return ArtifactRef(ref_path, digest).uri


def recorded_uri(root: str, path: str) -> str:
    """The URI of an existing file with the digest recorded when it was saved (without a
    digest when none was recorded: loading it will then be refused, with that reason)."""
    ref = ArtifactRef(str(_relative_parts(path)), None)
    target = locate(ref, root) + DIGEST_SUFFIX
    try:
        if _is_gcs(root):
            digest = _gcs_blob(target).download_as_text().strip()
        else:
            digest = Path(target).read_text(encoding="ascii").strip()
    except Exception:  # no sidecar (saved before digests) or unreadable: no digest
        return ref.uri
    return ArtifactRef(ref.path, digest if _HEX64.fullmatch(digest) else None).uri


@contextmanager
def _local_copy(location: str) -> Iterator[Path]:
    if not _is_gcs(location):
        yield Path(location)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / PurePosixPath(location).name
        _gcs_blob(location).download_to_filename(str(local))
        yield local


def load_artifact(root: str, uri: str, load: Callable[[Path], T]) -> T:
    """`load(path)` of the file `uri` names, after checking it is inside `root` and that its
    sha256 is the one the URI carries. Raises `ArtifactError` (nothing deserialized) if not, or
    if the file is missing."""
    ref = parse_uri(uri, root)
    if ref.sha256 is None:
        raise ArtifactError(
            f"{ref.path} has no sha256 digest (saved before digests were recorded): "
            "promote a newly trained model"
        )
    with _local_copy(locate(ref, root)) as local:
        if not local.is_file():
            raise ArtifactError(f"{ref.path} is missing from the model store")
        actual = sha256_of(local)
        if actual != ref.sha256:
            raise ArtifactError(
                f"{ref.path} does not match its digest (sha256 {actual[:12]}..., expected "
                f"{ref.sha256[:12]}...): the file changed after it was saved"
            )
        return load(local)
