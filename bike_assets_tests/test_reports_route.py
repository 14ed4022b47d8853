"""GET /reports/{name}: the reports LocalReportStore writes, served read-only by the serving app.

Normal answers through Litestar's TestClient; traversal attempts over a real uvicorn server on
127.0.0.1 with http.client, which sends the path byte for byte (httpx would normalise `..`).
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from litestar.testing import TestClient

from bike_assets.resources.report_store import LocalReportStore
from bike_assets.settings import Settings
from bike_assets_tests.local_http import free_port
from bike_serving.app import create_app

SECRET = b'{"note": "outside the reports folder"}'
HTML = b"<!doctype html><html><body><h1>drift</h1></body></html>"


def _settings(data_dir: Path) -> Settings:
    return dataclasses.replace(Settings(), data_dir=data_dir, reload_interval_s=0.0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with two reports written by the store, and a file beside the folder."""
    data = tmp_path / "data"
    store = LocalReportStore(root=str(_settings(data).reports_dir))
    store.put("drift_1a2b3c4d.html", HTML, "text/html")
    store.put("evaluation_v3.json", json.dumps({"decision": "DEPLOY"}).encode(), "application/json")
    (data / "outside.json").write_bytes(SECRET)
    return data


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(_settings(data_dir))) as test_client:
        yield test_client


@pytest.fixture
def server(data_dir: Path) -> Iterator[tuple[str, int]]:
    """The app under uvicorn on a free 127.0.0.1 port, stopped at the end."""
    port = free_port()
    config = uvicorn.Config(
        create_app(_settings(data_dir)), host="127.0.0.1", port=port, log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.started, "uvicorn did not start"
    try:
        yield "127.0.0.1", port
    finally:
        running.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_stored_report_is_served_with_its_content_type(client: TestClient[Any]) -> None:
    html = client.get("/reports/drift_1a2b3c4d.html")
    assert html.status_code == 200
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert html.headers["content-disposition"].startswith("inline")
    assert html.headers["x-content-type-options"] == "nosniff"
    assert html.headers["content-security-policy"].startswith("sandbox")
    assert html.content == HTML
    report = client.get("/reports/evaluation_v3.json")
    assert report.status_code == 200
    assert report.headers["content-type"] == "application/json"
    assert report.json() == {"decision": "DEPLOY"}


def test_the_url_the_store_links_is_the_route(data_dir: Path, client: TestClient[Any]) -> None:
    base = str(client.base_url).rstrip("/") + "/reports"
    store = LocalReportStore(root=str(data_dir / "reports"), base_url=base)
    stored = store.put("evaluation_v4.json", b'{"decision": "SKIP"}', "application/json")
    assert stored.url == f"{base}/evaluation_v4.json"
    assert client.get(stored.url).json() == {"decision": "SKIP"}


@pytest.mark.parametrize(
    "name",
    [
        "evaluation_v9.json",  # not written (yet)
        "notes.txt",  # not a report type of the platform
        "drift_1a2b3c4d.HTML",
        ".evaluation_v3.json",  # a dot file: put's temporaries
        "x" * 300 + ".json",
        "évaluation.json",
    ],
)
def test_a_missing_or_bad_name_is_a_404_naming_the_field(
    client: TestClient[Any], name: str
) -> None:
    answer = client.get(f"/reports/{name}")
    assert answer.status_code == 404
    body = answer.json()
    assert body["field"] == "name" and body["status_code"] == 404
    assert len(body["detail"]) < 300  # an echoed name is cut


def test_a_symlink_out_of_the_folder_is_not_followed(
    data_dir: Path, client: TestClient[Any]
) -> None:
    (data_dir / "reports" / "leak.json").symlink_to(data_dir / "outside.json")
    answer = client.get("/reports/leak.json")
    assert answer.status_code == 404 and answer.json()["field"] == "name"


@pytest.mark.parametrize(
    "target",
    [
        "/reports/../outside.json",
        "/reports/..%2Foutside.json",
        "/reports/%2e%2e%2foutside.json",
        "/reports/%2e%2e/outside.json",
        "/reports/..%5Coutside.json",
        "/reports/sub%2Fevaluation_v3.json",
        "/reports/%2Fetc%2Fpasswd",
    ],
)
def test_traversal_is_refused_over_a_real_socket(server: tuple[str, int], target: str) -> None:
    status, body = _raw_get(server, target)
    assert status == 404
    assert SECRET not in body
    assert json.loads(body)["field"] == "name"


@pytest.mark.parametrize("target", ["/reports", "/reports/"])
def test_the_folder_is_not_listed(server: tuple[str, int], target: str) -> None:
    status, body = _raw_get(server, target)
    assert 400 <= status < 500
    assert b"evaluation_v3" not in body and b"drift_" not in body
    assert json.loads(body)["status_code"] == status


def _raw_get(server: tuple[str, int], target: str) -> tuple[int, bytes]:
    """GET `target` exactly as written: http.client neither normalises nor re-encodes it."""
    connection = http.client.HTTPConnection(*server, timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
