"""Issue #13 Build 5: schemathesis, driven by the app's own OpenAPI document, finds no 5xx.

Every operation of the document gets cases that follow the schema (positive) and, where it has
parameters or a body, cases that break it (negative: wrong types, missing fields, bytes that
are not JSON). Over 1,000 cases in all, each sent through the real app; none may answer 5xx,
and every error must be the API's JSON error shape.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from bike_assets_tests.serving_fixtures import COUNTERS, publish, serving_client, trained

EXAMPLES = {"POST /predict": 260, "GET /forecast": 260}  # the operations that take input
OTHERS = 5
MIN_CASES = 1_000


def with_known_input(case: Any, stamp: datetime | None) -> Any:
    """Half of the positive cases, made to name a real counter (and a real hour, if drawn):
    schemathesis's random strings are never one, so the prediction paths (forecast window,
    cached days, pipeline) would otherwise never be reached."""
    if case.operation.label == "GET /forecast" and isinstance(case.query, dict):
        case.query["counter_id"] = COUNTERS[0]
        if stamp is not None:
            case.query["start"] = stamp.isoformat()
    elif case.operation.label == "POST /predict" and isinstance(case.body, dict):
        for record in case.body.get("records") or []:
            if isinstance(record, dict):
                record["counter_id"] = COUNTERS[1]
                if stamp is not None:
                    record["timestamp"] = stamp.isoformat()
    return case


def cases(operation: Any, mode: GenerationMode) -> st.SearchStrategy[Any]:
    strategy = operation.as_strategy(mode)
    if mode is not GenerationMode.POSITIVE:
        return strategy
    stamps = st.none() | st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
    )
    return strategy | st.builds(with_known_input, strategy, stamps)


def test_schemathesis_finds_no_server_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="httpx")  # one INFO line per request otherwise
    publish(tmp_path, trained("1"), "1")
    statuses: Counter[tuple[str, int]] = Counter()
    with serving_client(tmp_path, max_records=20) as client:
        schema = schemathesis.openapi.from_dict(client.get("/schema/openapi.json").json())
        # .ok() raises on an operation the document describes badly: that fails the test
        operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
        assert {op.label for op in operations} >= {"POST /predict", "GET /forecast"}

        def send(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url=str(client.base_url))
            if "data" in kwargs:  # raw bytes (negative cases): httpx calls them content
                kwargs["content"] = kwargs.pop("data")
            response = client.request(**kwargs)
            statuses[(case.operation.label, response.status_code)] += 1
            assert response.status_code < 500, (kwargs, response.text)
            if response.status_code >= 400:
                body = response.json()
                assert body["status_code"] == response.status_code
                assert isinstance(body["detail"], str) and body["detail"]

        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @settings(
                    max_examples=EXAMPLES.get(operation.label, OTHERS),
                    deadline=None,
                    database=None,
                    derandomize=True,  # the same cases on every run: a failure reproduces
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=cases(operation, mode))
                def run(case: Any) -> None:
                    send(case)

                try:
                    run()
                except Unsatisfiable:
                    # no parameters and no body: nothing can violate the schema
                    assert mode is GenerationMode.NEGATIVE
    total = sum(statuses.values())
    print(f"{total} schemathesis cases: {sorted(statuses.items())}")
    assert total >= MIN_CASES
    reached = {label for (label, status) in statuses if status == 200}
    assert {"POST /predict", "GET /forecast"} <= reached  # predictions, not only errors


@pytest.mark.parametrize("label", ["POST /predict", "GET /forecast"])
def test_schema_operations_take_the_documented_input(tmp_path: Path, label: str) -> None:
    """The premise of the test above: the document describes the inputs (a schema without them
    would let schemathesis generate nothing worth sending)."""
    publish(tmp_path, trained("1"), "1")
    with serving_client(tmp_path) as client:
        schema = schemathesis.openapi.from_dict(client.get("/schema/openapi.json").json())
        operation = schema.find_operation_by_label(label)
        assert operation is not None
        assert operation.body or list(operation.iter_parameters())
