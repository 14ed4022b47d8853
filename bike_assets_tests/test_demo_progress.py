"""The demo's progress lines: real runs through the demo's runner, the printer's output captured.

A backfill of raw_counts from the Paris API stand-in (a real HTTP server on 127.0.0.1) reports
its days as they land; the runner must show them, in order, and end each step with one line.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from bike_assets.demo.progress import StepProgress
from bike_assets.demo.runner import range_tags, run_job
from bike_assets.sources.fake_paris_api import FakeParisApi, make_records
from bike_assets_tests.conftest import Platform

DAYS = [date(2021, 5, 1) + timedelta(days=i) for i in range(10)]
# a progress line as printed: step, days done/total, rows so far, rate
REPORT = re.compile(r"  raw_counts +(\d+)/(\d+) days  ([\d,]+) rows  ([\d.]+) days/s")
EVERY_3_DAYS = {"ops": {"raw_counts": {"config": {"progress_every_days": 3}}}}


class Terminal(io.StringIO):
    """What a terminal would have received (a StringIO that says it is a TTY)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def api() -> Iterator[FakeParisApi]:
    with FakeParisApi(make_records(DAYS, counters=2, seed=6)) as server:
        yield server


def _ingest(paris: Platform, stream: io.StringIO) -> None:
    run_job(
        paris.defs,
        paris.instance,
        "ingest_job",
        tags=range_tags(DAYS[0], DAYS[-1]),
        run_config=EVERY_3_DAYS,
        stream=stream,
    )


def test_a_backfill_prints_its_days_as_plain_lines_when_not_a_tty(paris: Platform) -> None:
    out = io.StringIO()
    _ingest(paris, out)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()  # CI logs get no in-place rewrites
    assert not any("DEBUG" in line or "STEP_START" in line for line in lines)
    reports = [m.groups() for m in map(REPORT.fullmatch, lines) if m is not None]
    assert [(int(done), int(total)) for done, total, _, _ in reports] == [(3, 10), (6, 10), (9, 10)]
    # 2 counters, hourly: the rows so far grow with the days
    assert [int(rows.replace(",", "")) for _, _, rows, _ in reports] == [144, 288, 432]
    assert all(float(rate) > 0 for *_, rate in reports)
    # then the step's one final line, at the total (the 10/10 report is not printed twice)
    steps = [line for line in lines if line.lstrip().startswith("raw_counts ")]
    assert len(steps) == len(reports) + 1
    assert re.fullmatch(r"  raw_counts +10/10 days  480 rows  done in \d+\.\d s", steps[-1])
    assert re.fullmatch(r"  raw_counts_checks +done in \d+\.\d s", lines[-1])


def test_on_a_tty_each_step_is_one_line_rewritten_in_place(paris: Platform) -> None:
    out = Terminal()
    _ingest(paris, out)
    text = out.getvalue()
    assert text.count("\r") >= 4  # started, then the 4 reports, rewritten in place
    shown = [line.split("\r")[-1].rstrip() for line in text.split("\n") if line]
    assert shown and all(line.startswith("  ") for line in shown)
    assert len(shown) == len({line.split()[0] for line in shown})  # one line per step
    assert re.fullmatch(r"  raw_counts +10/10 days  480 rows  done in \d+\.\d s", shown[0])
    assert "3/10 days" in text.split("\n")[0]  # the open line showed the progress before the end


def test_a_step_without_reports_ticks_its_elapsed_seconds_on_a_tty() -> None:
    out = Terminal()
    with StepProgress(out, tick_s=0.05) as progress:
        progress.step_started("challenger_model")
        deadline = time.monotonic() + 5
        while "running  0 s" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        progress.step_ended("challenger_model", ok=False)
    text = out.getvalue()
    assert "running  0 s" in text  # the ticker rewrote the line while nothing happened
    assert re.search(r"\r  challenger_model +FAILED in \d+\.\d s *\n$", text), text
