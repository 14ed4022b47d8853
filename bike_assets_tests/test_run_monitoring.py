"""A killed run does not block ingestion for ever (issue 13, point 2), on the production stack.

An ingestion run holds the only `paris_api` pool slot while the (stand-in) Paris API is slow;
the next ingestion waits for that slot. We SIGKILL the run's process group, as `docker stop`, a
lost node or the OOM killer of a cgroup would. With Dagster's default run launcher the run worker
is a child of the code server, in its process group, so the code server dies too and nobody is
left to mark the run failed: it would stay STARTED and hold the slot for ever. The code server
is restarted (compose's restart policy, Kubernetes), and run monitoring (deploy/dagster.yaml)
must end the dead run after its maximum runtime and free its slot; the waiting ingestion must
then succeed.

(Killing only the run worker's own processes is the easy case: the surviving code server marks
the run failed within seconds, and the daemon frees its slot after
free_slots_after_run_end_seconds.)

The instance is deploy/dagster.yaml with shorter clocks (poll 2 s, free slots 5 s after the end)
and the victim carries its own `dagster/max_runtime` (45 s), so the test takes minutes instead
of the production 4 h.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import yaml

from bike_assets import stack
from bike_assets.sources.fake_paris_api import CannedResponse, FakeParisApi, make_records
from bike_assets.stack import INSTANCE_CONFIG
from bike_assets_tests.stack_harness import (
    RunningStack,
    launch_run,
    run_events,
    running_stack,
    runs,
    wait_for,
    wait_run,
)

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

VICTIM_DAY, NEXT_DAY = date(2024, 3, 4), date(2024, 3, 5)
VICTIM_MAX_RUNTIME_S = 45
STARTED_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


@pytest.fixture
def fake_api() -> Iterator[FakeParisApi]:
    with FakeParisApi(make_records([VICTIM_DAY, NEXT_DAY], counters=3)) as api:
        # the victim's first request hangs (the portal under load); stop() interrupts it
        api.enqueue(CannedResponse.slow(600))
        yield api


@pytest.fixture
def platform(tmp_path: Path, fake_api: FakeParisApi) -> Iterator[RunningStack]:
    instance = yaml.safe_load(INSTANCE_CONFIG.read_text())
    production = instance["run_monitoring"]
    assert production["max_runtime_seconds"] > 0 and production["free_slots_after_run_end_seconds"]
    instance["run_monitoring"] |= {
        "poll_interval_seconds": 2,
        "free_slots_after_run_end_seconds": 5,
    }
    fast = tmp_path / "dagster.yaml"
    fast.write_text(yaml.safe_dump(instance))
    env = {
        "BIKE_SOURCE": "paris",
        "PARIS_OPEN_DATA_URL": fake_api.url,
        "PARIS_HTTP_TIMEOUT": "900",  # the hanging answer must not time out on its own
        "BIKE_PARTITIONS_START": "2024-01-01",
    }
    with running_stack(
        tmp_path, env, only=["code-location", "webserver", "daemon"], instance_config=fast
    ) as running:
        yield running


def step_started(platform: RunningStack, run_id: str, step: str) -> bool:
    return any(
        e["__typename"] == "ExecutionStepStartEvent" and step in e.get("message", "")
        for e in run_events(platform, run_id)
    )


def worker_pid(platform: RunningStack, run_id: str) -> int:
    for event in run_events(platform, run_id):
        found = STARTED_PID.search(event.get("message", ""))
        if found:
            return int(found.group(1))
    raise AssertionError(f"run {run_id} logged no worker pid")


def test_a_killed_ingestion_frees_the_paris_api_slot_for_the_next(
    platform: RunningStack, fake_api: FakeParisApi
) -> None:
    victim = launch_run(
        platform,
        "ingest_job",
        tags={
            "dagster/partition": VICTIM_DAY.isoformat(),
            "dagster/max_runtime": str(VICTIM_MAX_RUNTIME_S),
        },
    )
    wait_for(
        "the victim to enter raw_counts (holding the paris_api slot)",
        lambda: step_started(platform, victim, "raw_counts"),
        timeout_s=180,
    )
    follower = launch_run(platform, "ingest_job", tags={"dagster/partition": NEXT_DAY.isoformat()})
    # the pool keeps the follower waiting while the victim holds the slot
    wait_for("the follower to be queued or blocked", lambda: runs(platform, runIds=[follower]), 30)
    (state,) = runs(platform, runIds=[follower])
    assert state["status"] in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED"}, state

    # kill -9 the run's process group: the run worker, its step subprocess and their parent,
    # the code server
    group = os.getpgid(worker_pid(platform, victim))
    assert group == next(s.pid for s in platform.started if s.name == "code-location")
    os.killpg(group, signal.SIGKILL)
    wait_for("the group to die", lambda: not stack.group_members(group), 20, poll_s=0.2)
    stack.restart(platform.config, "code-location")

    dead = wait_run(platform, victim, timeout_s=VICTIM_MAX_RUNTIME_S + 120)
    assert dead["status"] == "FAILURE", dead
    messages = " ".join(e.get("message", "") for e in run_events(platform, victim))
    assert "maximum runtime" in messages  # ended by run monitoring, not by chance

    done = wait_run(platform, follower, timeout_s=240)
    assert done["status"] == "SUCCESS", done
    # the follower really fetched its day from the API after the victim's slot was freed
    assert any(NEXT_DAY.isoformat() in " ".join(entry.params.values()) for entry in fake_api.log)
