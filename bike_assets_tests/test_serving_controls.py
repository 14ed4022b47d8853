"""Issue #8 point 6: the original's HTTP controls on bike_serving, as Dagster runs started through
the webserver's GraphQL API; the e2e test talks to a real dagster-webserver."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bike_assets_tests.local_http import free_port
from bike_assets_tests.serving_fixtures import API_KEY, serving_client
from bike_assets_tests.test_webserver_e2e import webserver

__all__ = ["webserver"]  # the fixture, shared with test_webserver_e2e.py

Client = TestClient[Any]
KEY = {"X-API-Key": API_KEY}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
CONTROLS = [
    ("/admin/retrain", {"force": True}, "retrain_job"),
    ("/admin/monitor", {"force": True}, "weekly_monitor_job"),
    ("/admin/promote", {"version": 3}, "rollback_champion_job"),
    ("/admin/evaluate", None, "evaluate_champion_job"),
]


@pytest.mark.e2e
def test_controls_start_runs_on_a_real_webserver_and_follow_them(
    webserver: str, tmp_path: Path
) -> None:
    with serving_client(tmp_path, dagster_graphql_url=f"{webserver}/graphql") as client:
        started: list[dict[str, Any]] = []
        for path, body, job in CONTROLS:
            assert client.post(path, json=body or {}).status_code == 401  # no key, no run
            response = client.post(path, json=body, headers=KEY)
            assert response.status_code == 202, response.text
            run = response.json()
            assert run["job"] == job
            assert run["status_url"] == f"/admin/runs/{run['run_id']}"
            assert run["dagster_url"] == f"{webserver}/runs/{run['run_id']}"
            started.append(run)

        # each run is followed to its end through the API (several fail: no data, no model 3)
        deadline = time.monotonic() + 300
        pending = {run["run_id"] for run in started}
        while pending and time.monotonic() < deadline:
            for run_id in sorted(pending):
                answer = client.get(f"/admin/runs/{run_id}", headers=KEY)
                assert answer.status_code == 200, answer.text
                assert answer.json()["dagster_url"].endswith(run_id)
                if answer.json()["status"] in TERMINAL:
                    pending.discard(run_id)
            time.sleep(1)
        assert not pending, f"runs still going after 300 s: {pending}"

        unknown = client.get("/admin/runs/00000000-0000-0000-0000-000000000000", headers=KEY)
        assert unknown.status_code == 404, unknown.text
        assert "could not be found" in unknown.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 0}, "version"),
        ({"version": "../../etc"}, "version"),
        ({"version": ""}, "version"),
        ({}, "version"),
        ({"version": 3, "force": True}, None),
    ],
)
def test_promote_refuses_bad_input_before_asking_dagster(
    tmp_path: Path, body: dict[str, Any], field: str | None
) -> None:
    # the URL leads nowhere: a 422 proves the input was judged first
    url = f"http://127.0.0.1:{free_port()}/graphql"
    with serving_client(tmp_path, dagster_graphql_url=url) as client:
        response = client.post("/admin/promote", json=body, headers=KEY)
        assert response.status_code == 422, response.text
        if field is not None:
            assert field in response.json()["detail"]


def test_controls_answer_503_when_dagster_is_absent_or_unreachable(tmp_path: Path) -> None:
    for url, words in (
        ("", "DAGSTER_GRAPHQL_URL"),
        (f"http://127.0.0.1:{free_port()}/graphql", "cannot be reached"),
    ):
        with serving_client(tmp_path, dagster_graphql_url=url) as client:
            for path, body, _ in CONTROLS:
                response = client.post(path, json=body, headers=KEY)
                assert response.status_code == 503, response.text
                assert words in response.json()["detail"]
                assert url.split("//")[-1] not in response.json()["detail"] or not url
            status = client.get("/admin/runs/0123abcd-0000", headers=KEY)
            assert status.status_code == 503


def test_controls_need_the_api_key_and_json(tmp_path: Path) -> None:
    with serving_client(tmp_path, dagster_graphql_url="") as client:
        for path, body, _ in CONTROLS:
            assert client.post(path, json=body).status_code == 401
            assert client.post(path, json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        plain = client.post(
            "/admin/promote",
            content=b'{"version": 3}',
            headers={**KEY, "content-type": "text/plain"},
        )
        assert plain.status_code == 415
    with serving_client(tmp_path, api_key="") as client:
        assert client.post("/admin/retrain", headers=KEY).status_code == 403


def test_openapi_documents_the_controls(tmp_path: Path) -> None:
    with serving_client(tmp_path) as client:
        paths = client.get("/schema").json()["paths"]
    for path in ("/admin/retrain", "/admin/monitor", "/admin/promote", "/admin/evaluate"):
        assert set(paths[path]["post"]["responses"]) >= {"202", "401", "503"}
    assert "/admin/runs/{run_id}" in paths
