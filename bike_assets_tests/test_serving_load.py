"""Issue #13 Build 5, serving: load, broken pointers under traffic, racing promotions.

Each test is bounded to seconds: requests go straight into the app's ASGI callable on its own
event loop (`AsgiDriver`: the real app, no HTTP client), RSS is read from /proc.
"""

from __future__ import annotations

import gc
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from litestar.testing import TestClient

from bike_assets.ml.pointer import ChampionPointer, read_pointer, write_pointer
from bike_assets.resources.champion_store import ChampionStore
from bike_assets.resources.model_store import ModelStore, artifact_path
from bike_assets_tests.serving_fixtures import (
    API_KEY,
    CACHE_START,
    COUNTERS,
    AsgiDriver,
    metric,
    model_path,
    publish,
    rss_bytes,
    serving_client,
    trained,
)

Client = TestClient[Any]
Request = tuple[str, str, bytes, dict[str, str]]
JSON = {"content-type": "application/json"}
MAX_RECORDS = 50


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Client]:
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path, max_records=MAX_RECORDS) as c:
        yield c


def _predict(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"records": records}).encode()


def _stamp(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).isoformat()


WINDOW_HOUR = int(CACHE_START.timestamp()) // 3600


def _one_record(rng: np.random.Generator, first: int, last: int) -> Request:
    """POST /predict of one random counter at a random hour in [first, last) from the window."""
    hour = WINDOW_HOUR + int(rng.integers(first, last))
    record = {"counter_id": COUNTERS[rng.integers(5)], "timestamp": _stamp(hour)}
    return ("POST", "/predict", _predict([record]), JSON)


# (name, expected status, maker(rng) -> request): what clients send, good and bad. Hours outside
# the window are drawn from two months around it: the first request of each counter-day costs a
# pipeline call (tested in test_serving_any_hour.py), the test is about what repeats.
KINDS: list[tuple[str, int, Callable[[np.random.Generator], Request]]] = [
    ("predict, window", 200, lambda r: _one_record(r, 0, 48)),
    ("predict, any hour of two months", 200, lambda r: _one_record(r, -720, 720)),
    (
        "predict, batch of 20",
        200,
        lambda r: (
            "POST",
            "/predict",
            _predict(
                [
                    {"counter_id": COUNTERS[i % 5], "timestamp": _stamp(WINDOW_HOUR + h)}
                    for i, h in enumerate(r.integers(-720, 720, 20).tolist())
                ]
            ),
            JSON,
        ),
    ),
    (
        "forecast",
        200,
        lambda r: (
            "GET",
            f"/forecast?counter_id={COUNTERS[r.integers(5)]}&hours={int(r.integers(1, 100))}"
            f"&start={quote(_stamp(WINDOW_HOUR + int(r.integers(-720, 720))))}",
            b"",
            {},
        ),
    ),
    ("counters", 200, lambda r: ("GET", "/counters", b"", {})),
    ("champion", 200, lambda r: ("GET", "/champion", b"", {})),
    ("ready", 200, lambda r: ("GET", "/health/ready", b"", {})),
    ("malformed JSON", 400, lambda r: ("POST", "/predict", b'{"records": [', JSON)),
    ("deep JSON", 400, lambda r: ("POST", "/predict", b'{"records":' + b"[" * 3000, JSON)),
    ("text/plain", 415, lambda r: ("POST", "/predict", b"{}", {"content-type": "text/plain"})),
    (
        "unknown counter",
        422,
        lambda r: (
            "POST",
            "/predict",
            _predict([{"counter_id": f"ghost-{r.integers(10**9)}", "timestamp": _stamp(0)}]),
            JSON,
        ),
    ),
    (
        "bad timestamp",
        422,
        lambda r: (
            "POST",
            "/predict",
            _predict([{"counter_id": COUNTERS[0], "timestamp": f"day {r.integers(10**6)}"}]),
            JSON,
        ),
    ),
    (
        "too many records",
        413,
        lambda r: (
            "POST",
            "/predict",
            _predict([{"counter_id": COUNTERS[0], "timestamp": _stamp(WINDOW_HOUR)}] * 51),
            JSON,
        ),
    ),
    ("no route", 404, lambda r: ("GET", f"/nothing/{r.integers(10**6)}", b"", {})),
    ("wrong method", 405, lambda r: ("DELETE", "/predict", b"", {})),
    ("admin without key", 401, lambda r: ("POST", "/admin/reload", b"", {})),
]
WEIGHTS = np.array([30, 20, 8, 6, 2, 2, 2, 4, 1, 3, 4, 4, 1, 3, 2, 1], dtype=float)


def mixed_requests(n: int, seed: int) -> tuple[list[Request], list[int], list[str]]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(KINDS), size=n, p=WEIGHTS / WEIGHTS.sum())
    requests = [KINDS[k][2](rng) for k in picks.tolist()]
    return requests, [KINDS[k][1] for k in picks.tolist()], [KINDS[k][0] for k in picks]


def test_20000_mixed_requests_no_5xx_and_bounded_memory(client: Client) -> None:
    assert len(WEIGHTS) == len(KINDS)
    driver = AsgiDriver(client)
    warmup, _, _ = mixed_requests(3_000, seed=1)  # caches, interned strings, metric children
    assert max(driver.run(warmup)) < 500
    gc.collect()
    before = rss_bytes()
    requests, expected, names = mixed_requests(20_000, seed=2)
    started = time.perf_counter()
    statuses = driver.run(requests)
    elapsed = time.perf_counter() - started
    gc.collect()
    growth = (rss_bytes() - before) / before
    print(f"20,000 requests in {elapsed:.1f} s; RSS {before / 2**20:.0f} MiB, {growth:+.2%}")

    wrong = Counter(
        (name, got, want)
        for name, got, want in zip(names, statuses, expected, strict=True)
        if got != want
    )
    assert not wrong, wrong.most_common(5)
    assert max(statuses) < 500
    assert len(set(names)) == len(KINDS)  # every kind was sent
    assert growth < 0.10
    assert metric(client, "litestar_requests_error_total") is None  # no 5xx counted either


def _break(data_dir: Path, kind: str) -> None:
    """Seven ways a pointer or its model file goes wrong in real life."""
    pointer_file = data_dir / "champion.json"
    store = ModelStore(root=str(data_dir))
    if kind == "corrupt JSON":
        pointer_file.write_text('{"version": "2", "model_uri": ', encoding="utf-8")
    elif kind == "no model_uri":
        pointer_file.write_text('{"version": "2"}', encoding="utf-8")
    elif kind == "pointer deleted":
        pointer_file.unlink(missing_ok=True)
    elif kind == "missing file":
        publish(data_dir, None, "2")
    elif kind == "file changed after saving":
        uri = store.save(trained("2"), "2")
        write_pointer(str(pointer_file), ChampionPointer("2", uri, {}, {}))
        model_path(data_dir, "2").write_bytes(b"\0" * 100)
    elif kind == "outside the store":
        uri = store.save(trained("2"), "2")
        write_pointer(str(pointer_file), ChampionPointer("2", "../" + uri, {}, {}))
    elif kind == "absolute path, no digest":
        store.save(trained("2"), "2")
        path = str(model_path(data_dir, "2"))
        write_pointer(str(pointer_file), ChampionPointer("2", path, {}, {}))
    else:
        raise AssertionError(kind)


BREAKAGES = [
    "corrupt JSON",
    "no model_uri",
    "pointer deleted",
    "missing file",
    "file changed after saving",
    "outside the store",
    "absolute path, no digest",
]


def test_the_last_good_model_is_served_through_broken_pointers(
    client: Client, tmp_path: Path
) -> None:
    """Under traffic, each breakage is picked up by a reload, counted as failed, and every
    request is still answered by version 1; a good promotion afterwards is served."""
    driver = AsgiDriver(client)
    holder = client.app.state.services.holder
    reload: Request = ("POST", "/admin/reload", b"", {"X-API-Key": API_KEY})
    good = [r for r in mixed_requests(3_000, seed=3)[0] if r[1] == "/predict"][:1_000]
    for i, kind in enumerate(BREAKAGES, start=1):
        shutil.rmtree(tmp_path / "models" / "v2", ignore_errors=True)
        _break(tmp_path, kind)
        statuses = driver.run([reload, *good[:300], reload])
        assert all(s < 500 for s in statuses), kind
        assert Counter(statuses[1:-1]) == Counter(driver.run(good[:300])), kind
        assert holder.require().pointer.version == "1", kind
        assert metric(client, "bike_model_reloads_total", result="failed") == 2 * i, kind
    shutil.rmtree(tmp_path / "models" / "v2", ignore_errors=True)
    publish(tmp_path, trained("2"), "2")
    assert driver.run([reload]) == [200]
    assert holder.require().pointer.version == "2"


def test_two_promotions_at_once_leave_one_valid_pointer_that_is_served(
    client: Client, tmp_path: Path
) -> None:
    """Two promoters save a model and move the pointer, 8 times each, at the same time as the
    server re-reads it: no reload ever sees a broken pointer or file, and in the end the pointer
    is one of theirs and is what the server answers with."""
    models = ModelStore(root=str(tmp_path))
    pointer_store = ChampionStore(pointer_uri=str(tmp_path / "champion.json"))
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def promoter(name: str, model: str) -> None:
        try:
            start.wait()
            for i in range(8):
                version = f"{name}{i}"
                uri = models.save(trained(model), version)
                pointer_store.write(ChampionPointer(version, uri, {}, {}))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [
        threading.Thread(target=promoter, args=(name, model))
        for name, model in (("a", "1"), ("b", "2"))
    ]
    for thread in threads:
        thread.start()
    start.wait()
    results: list[str] = []
    while any(t.is_alive() for t in threads):
        response = client.post("/admin/reload", headers={"X-API-Key": API_KEY})
        results.append(response.json()["result"])
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert "failed" not in results, results
    final = read_pointer(str(tmp_path / "champion.json"))
    assert final is not None and final.version in {f"{n}7" for n in "ab"}
    assert not list(tmp_path.glob(".champion.json.*.tmp"))
    client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert client.get("/champion").json()["version"] == final.version
    assert final.model_uri.startswith(artifact_path(final.version) + "#sha256=")


def test_the_driver_answers_like_the_http_client(client: Client) -> None:
    """`AsgiDriver` is only a faster client: same statuses as httpx for the same requests."""
    driver = AsgiDriver(client)
    requests, _, _ = mixed_requests(200, seed=4)
    via_http = [
        client.request(method, target, content=body or None, headers=headers).status_code
        for method, target, body, headers in requests
    ]
    assert driver.run(requests) == via_http
