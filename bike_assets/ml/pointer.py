"""The champion pointer: one small JSON document that names the model being served.

It is the single source of truth for "which model is the champion" (MLflow's `champion` alias
follows it). It is written atomically: a local temp file + `os.replace`, or on GCS an upload with
a generation precondition, so a reader sees the old pointer or the new one, never half of one,
and two racing promotions leave one valid pointer.

`model_uri` names the model file relative to the model store, with the sha256 computed when it
was saved (`models/v12/model.skops#sha256=...`, from `ModelStore.save`): readers resolve it
inside the store and check the digest before loading (`bike_assets.ml.model_files`). Fields
this version does not know are ignored when reading, so newer writers do not break older readers.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class PointerError(RuntimeError):
    """The pointer exists but cannot be used (corrupt JSON, missing fields, unreadable)."""


class PointerConflictError(PointerError):
    """Another writer moved the pointer between our read and our write (GCS precondition)."""


@dataclass(frozen=True)
class ChampionPointer:
    version: str
    model_uri: str
    # the served artifact's training hours: {start, end, excluded: [[start, end), ...]} (UTC)
    trained_range: dict[str, Any]
    metrics: dict[str, Any]
    promoted_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    previous: dict[str, Any] | None = None
    # "model" (a trained challenger) or "naive" (the seasonal naive, served when it beat the
    # challenger and no better champion existed)
    kind: str = "model"
    # the training hours of the artifact that was evaluated (the served one is refit on all data)
    evaluated_range: dict[str, Any] = field(default_factory=dict)
    # the last Paris day whose counts the served artifact's recent level has seen (daily update)
    level_as_of: str = ""
    # the MLflow model version `@champion` names: `version` itself, or after a daily level
    # update the version registered for it (tagged level_update_of=version); "" before #15
    registry_version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    def summary(self) -> dict[str, Any]:
        """What a successor keeps of this pointer in its `previous` (kept one level deep)."""
        return {
            "version": self.version,
            "model_uri": self.model_uri,
            "trained_range": self.trained_range,
            "promoted_at": self.promoted_at,
            "kind": self.kind,
            "registry_version": self.registry_version,
        }

    @classmethod
    def from_json(cls, text: str, source: str = "pointer") -> ChampionPointer:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PointerError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise PointerError(f"{source} must hold a JSON object")
        missing = [f for f in ("version", "model_uri") if not data.get(f)]
        if missing:
            raise PointerError(f"{source} lacks {', '.join(missing)}")
        return cls(
            version=str(data["version"]),
            model_uri=str(data["model_uri"]),
            trained_range=dict(data.get("trained_range") or {}),
            metrics=dict(data.get("metrics") or {}),
            promoted_at=str(data.get("promoted_at") or ""),
            previous=data.get("previous"),
            kind=str(data.get("kind") or "model"),
            evaluated_range=dict(data.get("evaluated_range") or {}),
            level_as_of=str(data.get("level_as_of") or ""),
            registry_version=str(data.get("registry_version") or ""),
        )


def _is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, blob = uri.removeprefix("gs://").partition("/")
    return bucket, blob


def read_text(uri: str) -> tuple[str, int | None] | None:
    """(text, generation) of a local path or gs:// object; None when it does not exist."""
    if _is_gcs(uri):
        from google.cloud import storage  # only needed in gcp

        bucket, name = _split_gcs(uri)
        blob = storage.Client().bucket(bucket).get_blob(name)
        if blob is None:
            return None
        return blob.download_as_text(), int(blob.generation)
    path = Path(uri)
    if not path.exists():
        return None
    return path.read_text(encoding="utf-8"), None


def read_pointer(uri: str) -> ChampionPointer | None:
    """The current champion, None if there is none yet; `PointerError` if it is broken."""
    try:
        found = read_text(uri)
    except OSError as exc:
        raise PointerError(f"cannot read champion pointer {uri}: {exc}") from exc
    if found is None:
        return None
    return ChampionPointer.from_json(found[0], source=uri)


def write_pointer(
    uri: str, pointer: ChampionPointer, if_generation_match: int | None = None
) -> None:
    """Replace the pointer atomically (readers never see a partial document)."""
    payload = pointer.to_json()
    if _is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud import storage

        bucket, name = _split_gcs(uri)
        blob = storage.Client().bucket(bucket).blob(name)
        try:
            # generation 0 means "only if it does not exist yet".
            blob.upload_from_string(
                payload,
                content_type="application/json",
                if_generation_match=0 if if_generation_match is None else if_generation_match,
            )
        except PreconditionFailed as exc:
            raise PointerConflictError(f"{uri} was moved by another promotion") from exc
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
