"""A run's progress on the terminal: one line per step, updated in place while it runs.

`StepProgress.logger_def()` is a Dagster logger (`@dg.logger`) that the runner makes the run's
only logger, so the terminal sees no Dagster DEBUG lines; the run's events are still stored in
DAGSTER_HOME as usual. From the run's events it keeps, per step:

- on a TTY, one line rewritten in place (`\\r`): the step, its progress (a backfill's
  `raw_counts progress: N/M days ...` log lines), the seconds elapsed, refreshed every second by
  a ticker thread so that a long step without events (training) still shows it is alive;
- elsewhere (CI logs, a pipe), plain lines: each progress report as it comes (but the last, which
  the final line repeats), no in-place updates;
- in both, the step's final line: `done` or `FAILED`, its rows (`dagster/row_count` of what it
  materialized) and its duration.

It never raises into the run: a line it cannot print is the logging module's business
(`Handler.handleError`), not the run's.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import dagster as dg

# What a backfill logs (bike_assets/backfill_progress.py: raw_counts, predictions); the test of
# the demo's progress runs the real asset, so a change of that wording fails there.
_DAYS = re.compile(
    r"progress: (?P<done>\d+)/(?P<total>\d+) days\b.*?(?P<rows>[\d,]+) rows so far"
    r"(?:.*?(?P<rate>[\d.]+) days/s)?"
)
LABEL_WIDTH = 36  # the longest step key, evaluation_report_challenger_is_sane


@dataclass(frozen=True)
class DaysDone:
    """One progress report of a backfill."""

    done: int
    total: int
    rows: int
    rate: float | None  # days/s

    @classmethod
    def parse(cls, message: str) -> DaysDone | None:
        match = _DAYS.search(message)
        if match is None:
            return None
        rate = float(match["rate"]) if match["rate"] else None
        return cls(
            int(match["done"]), int(match["total"]), int(match["rows"].replace(",", "")), rate
        )

    def __str__(self) -> str:
        rate = f"  {self.rate:.1f} days/s" if self.rate is not None else ""
        return f"{self.done}/{self.total} days  {self.rows:,} rows{rate}"


@dataclass
class _Step:
    started: float
    days: DaysDone | None = None  # the last progress report
    rows: int = 0  # materialized (`dagster/row_count`)


class StepProgress:
    """Prints the steps of one run to `stream`; `live` (default: `stream.isatty()`) rewrites the
    current step's line in place. Use it as a context manager around the run: leaving stops the
    ticker and ends a line left open by a run that stopped mid-step."""

    def __init__(self, stream: TextIO, live: bool | None = None, tick_s: float = 1.0) -> None:
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.tick_s = tick_s
        self.steps: dict[str, _Step] = {}
        self._current: str | None = None  # the step whose line is open (live only)
        self._width = 0  # of the open line, so a shorter rewrite blanks the rest
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> StepProgress:
        if self.live:
            self._ticker = threading.Thread(target=self._tick, name="demo-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self._current is not None:
                self._write("\n")
                self._current, self._width = None, 0

    # --- events -------------------------------------------------------------------------------

    def step_started(self, key: str) -> None:
        with self._lock:
            self.steps[key] = _Step(started=time.monotonic())
            if self.live:
                self._show(key, "running")

    def step_logged(self, key: str, message: str) -> None:
        days = DaysDone.parse(message)
        step = self.steps.get(key)
        if days is None or step is None:
            return
        with self._lock:
            step.days = days
            if self.live:
                self._show(key, str(days))
            elif days.done < days.total:  # the last report would repeat the final line
                self._write(self._line(key, str(days)) + "\n")

    def step_materialized(self, key: str, rows: int) -> None:
        step = self.steps.get(key)
        if step is not None:
            step.rows += rows

    def step_ended(self, key: str, ok: bool) -> None:
        step = self.steps.get(key)
        if step is None:
            return
        elapsed = time.monotonic() - step.started
        # what was stored when the step materialized rows, else what its last report counted
        rows = step.rows or (step.days.rows if step.days else 0)
        parts = [
            f"{step.days.done}/{step.days.total} days" if step.days else "",
            f"{rows:,} rows" if rows else "",
            f"{'done' if ok else 'FAILED'} in {elapsed:.1f} s",
        ]
        with self._lock:
            line = self._line(key, "  ".join(p for p in parts if p))
            if self.live and self._current is not None:
                self._rewrite(line)
                self._write("\n")
                self._current, self._width = None, 0
            else:
                self._write(line + "\n")

    # --- the Dagster side ---------------------------------------------------------------------

    def logger_def(self) -> dg.LoggerDefinition:
        """A Dagster logger feeding this printer with the run's events and log lines."""
        handler = _EventHandler(self)

        @dg.logger(
            config_schema=None, description="The demo's per-step progress lines on the terminal."
        )
        def demo_progress(_: dg.InitLoggerContext) -> logging.Logger:
            # a Logger of our own, outside the logging tree: nothing propagates to the root
            log = logging.Logger("bike_demo_progress", logging.DEBUG)
            log.addHandler(handler)
            return log

        return demo_progress

    # --- the terminal -------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                key = self._current
                step = self.steps.get(key) if key is not None else None
                if key is not None and step is not None:
                    elapsed = time.monotonic() - step.started
                    self._show(key, f"{step.days or 'running'}  {elapsed:.0f} s")

    def _show(self, key: str, text: str) -> None:
        """Rewrite the open line (the caller holds the lock); a new step first ends the last."""
        if self._current is not None and self._current != key:
            self._write("\n")
            self._width = 0
        self._current = key
        self._rewrite(self._line(key, text))

    def _rewrite(self, line: str) -> None:
        self._write("\r" + line.ljust(self._width))
        self._width = len(line)

    def _line(self, key: str, text: str) -> str:
        return f"  {key:<{LABEL_WIDTH}} {text}"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class _EventHandler(logging.Handler):
    """Dagster gives a logger's records its structured event as the `dagster_meta` attribute
    (what the built-in JSON console logger prints); the step events and log lines are read from
    there rather than parsed out of the formatted message."""

    def __init__(self, progress: StepProgress) -> None:
        super().__init__(logging.DEBUG)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._handle(getattr(record, "dagster_meta", None))
        except Exception:  # a progress line is never worth a failed run
            self.handleError(record)

    def _handle(self, meta: Any) -> None:
        if not meta or not meta.get("step_key"):
            return
        key: str = meta["step_key"]
        event = meta.get("dagster_event")
        if event is None:
            self.progress.step_logged(key, str(meta.get("orig_message", "")))
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.progress.step_started(key)
        elif kind == "ASSET_MATERIALIZATION":
            metadata = event.step_materialization_data.materialization.metadata
            rows = getattr(metadata.get("dagster/row_count"), "value", 0)
            self.progress.step_materialized(key, int(rows or 0))
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            self.progress.step_ended(key, ok=kind == "STEP_SUCCESS")
