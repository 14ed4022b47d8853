"""Issue #13, serving defects 5-8: each test here failed before the fix and passes now.

5. deeply nested JSON was a 500 (msgspec's RecursionError reached the catch-all handler);
6. /champion and 503 bodies showed server paths; the pointer held absolute paths, and whatever
   file it named was deserialized, unchecked;
7. settings had no range checks (tested in test_settings.py; here: the app refuses to start);
8. /forecast answered hours past 2100 that /predict refused; text/plain bodies were accepted;
   the OpenAPI schema did not give the timestamp format; /schema was Swagger UI from a CDN.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from bike_assets.ml.model import load_pipeline
from bike_assets.ml.model_files import (
    ArtifactError,
    load_artifact,
    locate,
    parse_uri,
    save_artifact,
)
from bike_assets.ml.pointer import ChampionPointer, write_pointer
from bike_assets.resources.model_store import ModelStore
from bike_assets.settings import SettingsError
from bike_assets_tests.serving_fixtures import (
    API_KEY,
    COUNTERS,
    model_path,
    publish,
    serving_client,
    trained,
)
from bike_serving.app import create_app

Client = TestClient[Any]
JSON = {"content-type": "application/json"}
GOOD_RECORD = {"counter_id": COUNTERS[0], "timestamp": "2024-06-03T08:00:00"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as c:
        yield c


def reload(client: Client) -> dict[str, Any]:
    response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- 5. malformed JSON of any depth is a 400 ------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"records":' + b"[" * 971,  # the reproduction
        b'{"records":' + b"[" * 971 + b"]" * 971 + b"}",  # well-formed, too deep
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"[" * 200_000,
    ],
    ids=["971 open", "971 closed", "5000 objects", "200k open"],
)
def test_deeply_nested_json_is_a_400_not_a_500(
    client: Client, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bike_serving"):
        response = client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "status_code": 400,
        "detail": "malformed JSON body: nested too deeply",
    }
    assert not caplog.records  # no traceback logged per request any more


def test_nesting_within_the_decoder_limit_is_a_422_naming_the_field(client: Client) -> None:
    body = b'{"records": [' + b"[" * 50 + b"]" * 50 + b"]}"
    response = client.post("/predict", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "records[0]"


# --- 8. only JSON bodies --------------------------------------------------------------------
@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "text/json"],
)
def test_bodies_that_are_not_declared_json_are_415(
    client: Client, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"records": [{"counter_id": "%s", "timestamp": "2024-06-03T08:00:00"}]}' % (
        COUNTERS[0].encode()
    )
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["field"] == "Content-Type"
    assert "application/json" in response.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_content_types_are_served(client: Client, content_type: str) -> None:
    response = client.post(
        "/predict",
        content=b'{"records": [{"counter_id": "%s", "timestamp": "2024-06-03T08:00:00"}]}'
        % COUNTERS[0].encode(),
        headers={"content-type": content_type},
    )
    assert response.status_code == 200, response.text


# --- 8. /forecast and /predict accept the same hours ---------------------------------------
def test_forecast_and_predict_accept_the_same_hour_range(client: Client) -> None:
    last = "2099-12-31T23:00:00Z"
    for stamp, ok in ((last, True), ("2100-01-01T00:00:00Z", False)):
        predict = client.post("/predict", json={"records": [{**GOOD_RECORD, "timestamp": stamp}]})
        forecast = client.get(
            "/forecast", params={"counter_id": COUNTERS[0], "start": stamp, "hours": 1}
        )
        assert (predict.status_code, forecast.status_code) == ((200, 200) if ok else (422, 422))
    # a series that starts in range and runs past the end used to be answered
    past = client.get("/forecast", params={"counter_id": COUNTERS[0], "start": last, "hours": 2})
    assert past.status_code == 422, past.text
    assert past.json()["field"] == "start"
    assert "2100-01-01" in past.json()["detail"]
    first = client.get(
        "/forecast",
        params={"counter_id": COUNTERS[0], "start": "1970-01-01T00:00:00Z", "hours": 3},
    )
    assert first.status_code == 200, first.text


# --- 8. OpenAPI: timestamp format, offline docs --------------------------------------------
def test_openapi_gives_the_timestamp_format_and_schema_is_the_raw_document(
    client: Client,
) -> None:
    raw = client.get("/schema")
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/json")
    assert "<script" not in raw.text and "cdn" not in raw.text.lower()  # nothing to fetch
    doc = raw.json()
    assert doc == client.get("/schema/openapi.json").json()
    stamp = doc["components"]["schemas"]["Record"]["properties"]["timestamp"]
    start = next(p for p in doc["paths"]["/forecast"]["get"]["parameters"] if p["name"] == "start")
    for schema in (stamp, start["schema"]):
        pattern = re.compile(schema["pattern"])
        for good in ("2024-06-03T08:00:00+02:00", "2024-06-03T08:00:00", "2024-06-03T06:00Z"):
            assert pattern.match(good), good
        for bad in ("3 June, 8am", "1717394400", "2024-06-03T08:00:00 CEST"):
            assert not pattern.match(bad), bad
    assert "Europe/Paris" in stamp["description"]


# --- 7. settings are checked when the app starts ------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BIKE_MAX_RECORDS", "-5"),
        ("BIKE_RELOAD_INTERVAL", "nan"),
        ("BIKE_FORECAST_CACHE_DAYS", "100000"),
        ("BIKE_API_KEY", "x"),
    ],
)
def test_the_app_refuses_to_start_with_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv("BIKE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        create_app()


# --- 6. no server path to callers; relative pointer; digest; store root ------------------
def test_errors_and_champion_name_no_server_path(tmp_path: Path) -> None:
    with serving_client(tmp_path) as c:  # no champion yet
        for response in (c.get("/champion"), c.post("/predict", json={"records": [GOOD_RECORD]})):
            assert response.status_code == 503
            assert str(tmp_path) not in response.text and "champion.json" not in response.text
        publish(tmp_path, None, "7")  # a pointer to a missing file
        body = reload(c)
        assert body["result"] == "failed"
        assert str(tmp_path) not in str(body)
        assert "models/v7/model.skops is missing" in body["detail"]

        publish(tmp_path, trained("1"), "1", previous={"version": "0", "model_uri": "/srv/x.pkl"})
        assert reload(c)["result"] == "loaded"
        champion = c.get("/champion")
        assert str(tmp_path) not in champion.text and "/srv" not in champion.text
        assert champion.json()["previous"] == {"version": "0"}  # outside the store: left out


def test_a_copied_data_dir_serves_its_own_files(tmp_path: Path) -> None:
    """The pointer names files relative to the store: after a copy (backup restore, new volume)
    the server loads the copy, even when the original is gone."""
    original, copy = tmp_path / "original", tmp_path / "copy"
    pointer = publish(original, trained("1"), "1")
    assert pointer.model_uri.startswith("models/v1/model.skops#sha256=")
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    with serving_client(copy) as c:
        assert c.get("/health/ready").status_code == 200
        response = c.post("/predict", json={"records": [GOOD_RECORD]})
        assert response.status_code == 200, response.text


def _point_at(data_dir: Path, model_uri: str, version: str = "9") -> None:
    pointer = ChampionPointer(version=version, model_uri=model_uri, trained_range={}, metrics={})
    write_pointer(str(data_dir / "champion.json"), pointer)


def test_a_file_changed_after_saving_is_not_loaded(client: Client, tmp_path: Path) -> None:
    uri = ModelStore(root=str(tmp_path)).save(trained("2"), "2")
    _point_at(tmp_path, uri, version="2")
    model_path(tmp_path, "2").write_bytes(model_path(tmp_path, "1").read_bytes())  # swapped
    body = reload(client)
    assert body["result"] == "failed"
    assert "does not match its digest" in body["detail"]
    assert client.get("/champion").json()["version"] == "1"


def test_files_outside_the_store_are_never_loaded(client: Client, tmp_path: Path) -> None:
    """Even with the right digest: the store is the only place models come from."""
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    uri = ModelStore(root=str(outside)).save(trained("2"), "2")
    digest = uri.partition("#")[2]
    (tmp_path / "models" / "link").symlink_to(outside / "models" / "v2", target_is_directory=True)
    for escaping in (
        f"../{outside.name}/models/v2/model.skops#{digest}",
        f"{outside}/models/v2/model.skops#{digest}",
        f"file://{outside}/models/v2/model.skops#{digest}",
        f"models/link/model.skops#{digest}",  # a symlink inside the store leading out
    ):
        _point_at(tmp_path, escaping)
        body = reload(client)
        assert body["result"] == "failed", escaping
        assert "outside the model store" in body["detail"], body["detail"]
        assert client.get("/champion").json()["version"] == "1"


def test_a_pointer_without_digest_is_refused(client: Client, tmp_path: Path) -> None:
    ModelStore(root=str(tmp_path)).save(trained("2"), "2")
    for legacy in ("models/v2/model.skops", str(model_path(tmp_path, "2"))):
        _point_at(tmp_path, legacy, version="2")
        body = reload(client)
        assert body["result"] == "failed"
        assert "no sha256 digest" in body["detail"]


def test_digest_is_checked_before_anything_is_deserialized(tmp_path: Path) -> None:
    """The loader is not even called for a wrong digest (a pickle would run code)."""
    calls: list[Path] = []

    def read(path: Path) -> bytes:
        calls.append(path)
        return path.read_bytes()

    uri = save_artifact(str(tmp_path), "models/v1/blob.bin", lambda p: p.write_bytes(b"abc"))
    assert load_artifact(str(tmp_path), uri, read) == b"abc"
    (tmp_path / "models" / "v1" / "blob.bin").write_bytes(b"abd")
    with pytest.raises(ArtifactError, match="digest"):
        load_artifact(str(tmp_path), uri, read)
    assert len(calls) == 1


def test_model_store_names_a_saved_version_with_its_recorded_digest(tmp_path: Path) -> None:
    """What a rollback uses: `uri_for(version)` gives the digest written at save time."""
    store = ModelStore(root=str(tmp_path))
    saved = store.uri_for("5")
    assert saved == "models/v5/model.skops"  # nothing saved yet: no digest to vouch for it
    uri = store.save(trained("1"), "5")
    assert store.uri_for("5") == uri
    assert store.load(uri).predict is not None
    assert isinstance(load_artifact(str(tmp_path), uri, load_pipeline), type(trained("1")))


DIGEST = "ab" * 32


GCS = "gs://bucket/prefix"


@pytest.mark.parametrize(
    ("uri", "root", "path"),
    [
        (f"models/v1/model.skops#sha256={DIGEST}", GCS, "models/v1/model.skops"),
        (f"{GCS}/models/v1/m.skops#sha256={DIGEST}", f"{GCS}/", "models/v1/m.skops"),
        (f"models/v1/m.skops#sha256={DIGEST}", "/srv/data", "models/v1/m.skops"),
    ],
)
def test_model_uris_resolve_inside_their_store(uri: str, root: str, path: str) -> None:
    ref = parse_uri(uri, root)
    assert (ref.path, ref.sha256, ref.uri) == (path, DIGEST, uri.split("/prefix/")[-1])
    if root.startswith("gs://"):
        assert locate(ref, root) == f"gs://bucket/prefix/{path}"


@pytest.mark.parametrize(
    ("uri", "root", "words"),
    [
        (f"gs://other/prefix/models/v1/m.skops#sha256={DIGEST}", "gs://bucket/prefix", "outside"),
        (f"gs://bucket/prefix-2/m.skops#sha256={DIGEST}", "gs://bucket/prefix", "outside"),
        (f"/etc/passwd#sha256={DIGEST}", "gs://bucket/prefix", "outside"),
        (f"gs://bucket/prefix/m.skops#sha256={DIGEST}", "/srv/data", "outside"),
        (f"models//m.skops#sha256={DIGEST}", "/srv/data", "outside"),
        (f"models\\m.skops#sha256={DIGEST}", "/srv/data", "POSIX"),
        ("models/m.skops#sha256=ABC", "/srv/data", "64 lowercase hex"),
        (f"#sha256={DIGEST}", "/srv/data", "non-empty"),
    ],
)
def test_model_uris_that_leave_the_store_or_are_malformed_are_refused(
    uri: str, root: str, words: str
) -> None:
    with pytest.raises(ArtifactError, match=words):
        parse_uri(uri, root)
