"""GET /reports/{name}: the reports the platform stores locally, for the links in the Dagster UI.

`LocalReportStore` writes the drift HTML and the evaluation JSON to `$BIKE_DATA_DIR/reports`;
with `BIKE_REPORTS_URL=<this API>/reports` (what `bike stack` sets) every report link in the UI
is an http link that opens (browsers do not follow file:// links from the http UI).

Guarantees: read-only; a name is one file name written by the platform (`.html` or `.json`, no
dot file: `put` writes `.<name>.*` temporaries) and resolves to a regular file directly in the
reports folder, so nothing else of the data directory (warehouse, models, pointer) is reachable;
anything else, including `..` and encoded slashes, is a 404 naming the field `name`. There is no
listing of the folder.

Not behind the API key: a report holds aggregate statistics (drift scores per column, error
metrics of models) of open data, like the public /champion answer; the key guards actions.
"""

from __future__ import annotations

import re
from pathlib import Path

from litestar import Controller, get
from litestar.response import File

from bike_serving.controllers.responses import error
from bike_serving.dependencies import Services
from bike_serving.errors import ServingError

# Litestar adds "; charset=utf-8" to text types itself
MEDIA_TYPES = {".html": "text/html", ".json": "application/json"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
NOT_FOUND = {404: error("No report of that name (`field`: name); the detail says why.")}


class ReportNotFoundError(ServingError):
    status_code = 404

    def __init__(self, detail: str) -> None:
        super().__init__(detail, "name")


def report_path(folder: Path, name: str) -> Path:
    """The file of report `name` in `folder`, or ReportNotFoundError."""
    shown = name if len(name) <= 64 else name[:61] + "..."
    if not _NAME.fullmatch(name) or Path(name).suffix not in MEDIA_TYPES:
        raise ReportNotFoundError(
            f"no report {shown!r}: a report is one file name ending in "
            f"{' or '.join(MEDIA_TYPES)}, as the links in the Dagster UI give it"
        )
    path = folder / name
    # a symlink planted in the folder must not lead out of it
    if path.is_symlink() or not path.is_file() or path.resolve().parent != folder.resolve():
        raise ReportNotFoundError(f"no report {shown!r} in the reports folder")
    return path


class ReportsController(Controller):
    path = "/reports"
    tags = ["reports"]

    # `path` type: every GET under /reports lands here, so a name with slashes (encoded or
    # not) gets this controller's 404 naming the field, not the router's bare one
    @get(
        "/{name:path}",
        summary="A drift (HTML) or evaluation (JSON) report, as the Dagster UI links it",
        responses=NOT_FOUND,
    )
    async def report(self, name: str, services: Services) -> File:
        path = report_path(services.settings.reports_dir, name.removeprefix("/"))
        return File(
            path=path,
            filename=path.name,
            media_type=MEDIA_TYPES[path.suffix],
            content_disposition_type="inline",  # shown in the browser, not downloaded
            # a report is rewritten under the same name (evaluation_v<N>.json)
            headers={
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                # Evidently's HTML runs its own inline scripts; the sandbox (without
                # allow-same-origin) runs them in an opaque origin, so a report can never act
                # as the API's origin (its cookies, storage, or requests that look same-origin)
                "Content-Security-Policy": "sandbox allow-scripts allow-popups",
            },
        )
