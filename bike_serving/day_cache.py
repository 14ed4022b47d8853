"""Predictions for hours outside the forecast window: whole days, computed once, kept in an LRU.

One pipeline call costs ~10 ms of pandas and scikit-learn overhead whatever its size up to a few
thousand rows, so answering one hour per call held a single worker to ~60 req/s for any hour
outside the window (#13). Here the first request that needs a day predicts every known counter x
the 24 hours of that day in ONE call of the champion's own pipeline; later requests for any
counter and hour of that day are array lookups, like the forecast window. Requests that miss
the same day at the same time wait for that one call (single flight).

Why the numbers are the pipeline's: the cache holds `predict_counts(pipeline, frame)` for the
rows asked, and a row's prediction does not depend on the other rows of its batch (the features
are a function of `(counter_id, timestamp)` and the fitted state, the model scores each row on
its own); test_serving_any_hour.py compares served and pipeline predictions on random hours.

Days here are UTC days (`hour // 24`): any fixed block of hours would do, and this one needs no
time-zone arithmetic per request. Memory is bounded by `DAY_CACHE_BYTES` (least recently used
days are dropped). Whole days are computed only when that is not much more work than the rows
asked (`worth_filling`): a 168-hour forecast of one counter in an uncached week is predicted row
by row instead of as 7 days x every counter.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

HOURS_PER_DAY = 24
DAY_CACHE_BYTES = 32 * 2**20  # ~1,700 days of 100 counters
ALWAYS_FILL_DAYS = 2  # a request touching this few days fills them whatever its size
FILL_WORK_RATIO = 2  # else fill when the whole days cost at most this many times the rows asked

Predict = Callable[[NDArray[np.intp], NDArray[np.int64]], NDArray[np.float64]]


class DaysAnswer(NamedTuple):
    values: NDArray[np.float64]  # counts in input order
    from_days: int  # read from cached days (computed by this request or an earlier one)
    from_pipeline: int  # predicted row by row (too many days to be worth caching)


class DayCache:
    """`table[day][counter_code, hour % 24]` for the days computed so far. Thread-safe: small
    requests read it on the event loop, big ones in worker threads."""

    def __init__(self, predict: Predict, n_counters: int, max_bytes: int = DAY_CACHE_BYTES):
        self._predict = predict  # blocking: (counter codes, hours since the epoch) -> counts
        self.n_counters = n_counters
        day_bytes = max(n_counters, 1) * HOURS_PER_DAY * 8
        self.capacity = max(ALWAYS_FILL_DAYS, max_bytes // day_bytes)
        self._days: OrderedDict[int, NDArray[np.float64]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[int, asyncio.Future[None]] = {}  # touched on the event loop only

    def __len__(self) -> int:
        return len(self._days)

    def lookup(
        self, codes: NDArray[np.intp], hours: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """(values, hit): values are NaN where the day is not cached."""
        days = hours // HOURS_PER_DAY
        values = np.full(len(codes), np.nan)
        hit = np.zeros(len(codes), dtype=bool)
        if len(days) and days.min() == days.max():  # one day: most requests
            groups: list[tuple[int, slice | NDArray[np.intp]]] = [(int(days[0]), slice(None))]
        else:
            unique, inverse = np.unique(days, return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
            groups = [
                (int(day), order[bounds[i] : bounds[i + 1]])
                for i, day in enumerate(unique.tolist())
            ]
        with self._lock:
            for day, rows in groups:
                table = self._days.get(day)
                if table is None:
                    continue
                self._days.move_to_end(day)
                values[rows] = table[codes[rows], hours[rows] - day * HOURS_PER_DAY]
                hit[rows] = True
        return values, hit

    def worth_filling(self, n_days: int, n_rows: int) -> bool:
        if n_days > self.capacity // 2:
            return False  # would evict what it just computed
        work = n_days * self.n_counters * HOURS_PER_DAY
        return n_days <= ALWAYS_FILL_DAYS or work <= FILL_WORK_RATIO * n_rows

    def fill_blocking(self, days: list[int]) -> None:
        """Compute `days` (those not cached yet) for every counter in one pipeline call."""
        with self._lock:
            todo = [d for d in days if d not in self._days]
        if not todo or not self.n_counters:
            return
        hours = (np.asarray(todo, np.int64)[:, None] * HOURS_PER_DAY + np.arange(24)).ravel()
        codes = np.repeat(np.arange(self.n_counters, dtype=np.intp), len(hours))
        values = self._predict(codes, np.tile(hours, self.n_counters))
        tables = values.reshape(self.n_counters, len(todo), HOURS_PER_DAY)
        with self._lock:
            for i, day in enumerate(todo):
                table = np.ascontiguousarray(tables[:, i, :])
                table.setflags(write=False)  # shared by concurrent requests
                self._days[day] = table
                self._days.move_to_end(day)
            while len(self._days) > self.capacity:
                self._days.popitem(last=False)

    async def fill(self, days: list[int]) -> None:
        """`fill_blocking` in a worker thread; days another request is computing are awaited."""
        waits = {id(f): f for d in days if (f := self._inflight.get(d)) is not None}
        todo = [d for d in days if d not in self._inflight]
        if todo:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for day in todo:
                self._inflight[day] = done
            try:
                await anyio.to_thread.run_sync(self.fill_blocking, todo)
            finally:
                for day in todo:
                    self._inflight.pop(day, None)
                done.set_result(None)  # waiters re-read the cache; a miss falls back
        for waiting in waits.values():
            await asyncio.shield(waiting)

    async def predict(self, codes: NDArray[np.intp], hours: NDArray[np.int64]) -> DaysAnswer:
        values, hit = self.lookup(codes, hours)
        if hit.all():
            return DaysAnswer(values, len(hit), 0)
        miss = np.flatnonzero(~hit)
        days = np.unique(hours[miss] // HOURS_PER_DAY).tolist()
        if self.worth_filling(len(days), len(miss)):
            await self.fill(days)
            values[miss], now_hit = self.lookup(codes[miss], hours[miss])
            miss = miss[~now_hit]  # evicted meanwhile by other fills: rare, predicted below
        if len(miss):
            values[miss] = await anyio.to_thread.run_sync(self._predict, codes[miss], hours[miss])
        return DaysAnswer(values, len(hit) - len(miss), len(miss))

    def predict_blocking(self, codes: NDArray[np.intp], hours: NDArray[np.int64]) -> DaysAnswer:
        """`predict` for callers already in a worker thread (big batches)."""
        values, hit = self.lookup(codes, hours)
        miss = np.flatnonzero(~hit)
        if len(miss):
            days = np.unique(hours[miss] // HOURS_PER_DAY).tolist()
            if self.worth_filling(len(days), len(miss)):
                self.fill_blocking(days)
                values[miss], now_hit = self.lookup(codes[miss], hours[miss])
                miss = miss[~now_hit]
            if len(miss):
                values[miss] = self._predict(codes[miss], hours[miss])
        return DaysAnswer(values, len(hit) - len(miss), len(miss))
