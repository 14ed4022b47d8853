"""Reports a person opens from the Dagster UI (drift HTML, evaluation JSON): stored where the
deployment stores artifacts, and linked by a URL that opens them.

Guarantees:
* `put(name, data, content_type)` writes the whole report or raises (a local file is written
  to a temporary name and renamed; a GCS upload is one object write), and returns a
  `StoredReport` whose `uri` says where it is and whose `url` is what the UI links to;
* `LocalReportStore`: files under `root` (`$BIKE_DATA_DIR/reports`). The URL is
  `<base_url>/<name>` when something serves that folder (`BIKE_REPORTS_URL`; the forecast API
  does, at `/reports/{name}`, and `bike stack` points it there), otherwise the file's `file://`
  URL (it opens on the machine that runs Dagster; browsers refuse to follow a file:// link from
  an http page on a click, so copy it, or set `BIKE_REPORTS_URL`);
* `GcsReportStore`: objects `gs://<bucket>/<prefix>/reports/<name>`, linked through
  `https://storage.cloud.google.com/...`, which opens in the browser of a signed-in user who may
  read the bucket (nothing is made public);
* a name is one path segment, so a report never lands outside the store.
`factory.py` chooses the implementation (`BIKE_ENV`), like every other resource.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import dagster as dg
from pydantic import Field


@dataclass(frozen=True)
class StoredReport:
    uri: str  # where it is: a local path or gs://...
    url: str  # what a click opens

    def link(self) -> dg.MetadataValue:
        return dg.MetadataValue.url(self.url)


def _checked(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"report name {name!r} must be one file name")
    return name


class ReportStore(dg.ConfigurableResource, ABC):  # type: ignore[misc]
    @abstractmethod
    def put(self, name: str, data: bytes, content_type: str) -> StoredReport:
        """Store the report `name` (one file name) and say where it is and how to open it."""

    @abstractmethod
    def url_for(self, name: str) -> str:
        """The URL of the report `name` as `put` links it."""

    def scratch_path(self, name: str) -> Path:
        """Where a report writer (e.g. Evidently's `save_html`) may write the file `name`
        before `put`: a temporary folder by default."""
        return Path(tempfile.mkdtemp(prefix="bike-report-")) / _checked(name)


class LocalReportStore(ReportStore):
    root: str = Field(description="Folder of the reports, e.g. $BIKE_DATA_DIR/reports.")
    base_url: str = Field(
        default="", description="URL serving `root` (BIKE_REPORTS_URL); empty: file:// URLs."
    )

    def scratch_path(self, name: str) -> Path:
        """In the reports folder itself: the file written there is the report."""
        Path(self.root).mkdir(parents=True, exist_ok=True)
        return Path(self.root) / _checked(name)

    def url_for(self, name: str) -> str:
        if self.base_url:
            return f"{self.base_url.rstrip('/')}/{quote(_checked(name))}"
        return (Path(self.root).resolve() / _checked(name)).as_uri()

    def put(self, name: str, data: bytes, content_type: str) -> StoredReport:
        folder = Path(self.root)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / _checked(name)
        # temp file + rename: a reader never sees half a report
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return StoredReport(uri=str(target.resolve()), url=self.url_for(name))


class GcsReportStore(ReportStore):
    bucket: str
    prefix: str = Field(default="bike-traffic", description="Reports go under <prefix>/reports/.")
    project: str = ""

    def _object(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/reports/{_checked(name)}".lstrip("/")

    def url_for(self, name: str) -> str:
        return f"https://storage.cloud.google.com/{self.bucket}/{quote(self._object(name))}"

    def put(self, name: str, data: bytes, content_type: str) -> StoredReport:
        from google.cloud import storage  # only needed on GCP

        client = storage.Client(project=self.project or None)
        blob = client.bucket(self.bucket).blob(self._object(name))
        blob.upload_from_string(data, content_type=content_type)
        return StoredReport(uri=f"gs://{self.bucket}/{self._object(name)}", url=self.url_for(name))
