"""Predictions for hours outside the forecast window: whole days, computed once, kept in an LRU.

One pipeline call costs ~10 ms of pandas and scikit-learn overhead whatever its size up to a few
thousand rows, so answering one hour per call held a single worker to ~60 req/s for any hour
outside the window (#13). Here a request that misses computes the whole day (24 hours) of each
counter it asks for, all in ONE call of the champion's own pipeline, and the whole day of every
counter once a day is asked for a second counter; later requests for any hour of those
counter-days are array lookups, like the forecast window. Requests that miss the same
counter-day at the same time wait for that one call (single flight). A day of one counter costs
about what one hour costs (the overhead dominates), so even a stream of random hours, each the
first of its day, is no slower than before, and a client that walks through hours, counters or
days (back-tests, dashboards) is served from memory after its first requests.

Why the numbers are the pipeline's: the cache holds `predict_counts(pipeline, frame)` for the
rows computed, and a row's prediction does not depend on the other rows of its batch (the
features are a function of `(counter_id, timestamp)` and the fitted state, the model scores each
row on its own); test_serving_any_hour.py compares served and pipeline predictions on random
hours, exactly.

Days here are UTC days (`hour // 24`): any fixed block of hours would do, and this one needs no
time-zone arithmetic per request. Memory is bounded by `DAY_CACHE_BYTES` (least recently used
days are dropped). Whole days are computed only when that is not much more work than the rows
asked (`worth_filling`): a batch of a few thousand hours each on another day is predicted row by
row instead of as thousands of counter-days.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

HOURS_PER_DAY = 24
DAY_CACHE_BYTES = 32 * 2**20  # ~1,500 days of 100 counters
# Rows a fill may always compute: up to a few thousand rows, a call costs about what one row does.
ALWAYS_FILL_ROWS = 2_400
FILL_WORK_RATIO = 2  # above that, fill when the counter-days cost at most this x the rows asked

Predict = Callable[[NDArray[np.intp], NDArray[np.int64]], NDArray[np.float64]]
CounterDay = tuple[int, int]  # (day, counter code)


class DaysAnswer(NamedTuple):
    values: NDArray[np.float64]  # counts in input order
    from_days: int  # read from cached days (computed by this request or an earlier one)
    from_pipeline: int  # predicted row by row (too many days to be worth caching)


class _Day:
    """One UTC day: `values[counter, hour % 24]`, valid where `filled[counter]`."""

    __slots__ = ("filled", "values")

    def __init__(self, n_counters: int) -> None:
        self.values = np.full((n_counters, HOURS_PER_DAY), np.nan)
        self.filled = np.zeros(n_counters, dtype=bool)


class DayCache:
    """Whole days of the counters asked so far. Thread-safe (every access holds the lock):
    small requests read it on the event loop, big ones in worker threads."""

    def __init__(self, predict: Predict, n_counters: int, max_bytes: int = DAY_CACHE_BYTES):
        self._predict = predict  # blocking: (counter codes, hours since the epoch) -> counts
        self.n_counters = n_counters
        day_bytes = max(n_counters, 1) * (HOURS_PER_DAY * 8 + 1)
        self.capacity = max(2, max_bytes // day_bytes)
        self._days: OrderedDict[int, _Day] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[CounterDay, asyncio.Future[None]] = {}  # event loop only

    def __len__(self) -> int:
        return len(self._days)

    def lookup(
        self, codes: NDArray[np.intp], hours: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """(values, hit): values are NaN where the counter-day is not cached."""
        if len(hours) == 1:  # most requests: Python scalars beat numpy's per-call overhead
            day, at = divmod(int(hours[0]), HOURS_PER_DAY)
            code = int(codes[0])
            with self._lock:
                cached = self._days.get(day)
                if cached is None or not cached.filled[code]:
                    return np.array([np.nan]), np.array([False])
                self._days.move_to_end(day)
                return np.array([cached.values[code, at]]), np.array([True])
        days = hours // HOURS_PER_DAY
        values = np.full(len(codes), np.nan)
        hit = np.zeros(len(codes), dtype=bool)
        groups: list[tuple[int, NDArray[np.intp]]]
        if len(days) and days.min() == days.max():  # one day: most requests
            groups = [(int(days[0]), np.arange(len(days)))]
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
                cached = self._days.get(day)
                if cached is None:
                    continue
                self._days.move_to_end(day)
                rows = rows[cached.filled[codes[rows]]]
                values[rows] = cached.values[codes[rows], hours[rows] - day * HOURS_PER_DAY]
                hit[rows] = True
        return values, hit

    def worth_filling(self, counter_days: list[CounterDay], n_rows: int) -> bool:
        if len({day for day, _ in counter_days}) > self.capacity // 2:
            return False  # would evict what it just computed
        work = len(counter_days) * HOURS_PER_DAY
        return work <= max(ALWAYS_FILL_ROWS, FILL_WORK_RATIO * n_rows)

    def fill_blocking(self, counter_days: list[CounterDay]) -> None:
        """Compute the 24 hours of each (day, counter) not cached yet, in one pipeline call."""
        with self._lock:
            todo = [
                (day, code)
                for day, code in counter_days
                if (cached := self._days.get(day)) is None or not cached.filled[code]
            ]
        if not todo:
            return
        pairs = np.asarray(todo, dtype=np.int64)
        hours = (pairs[:, :1] * HOURS_PER_DAY + np.arange(HOURS_PER_DAY)).ravel()
        codes = np.repeat(pairs[:, 1], HOURS_PER_DAY).astype(np.intp)
        values = self._predict(codes, hours).reshape(len(todo), HOURS_PER_DAY)
        with self._lock:
            for (day, code), row in zip(todo, values, strict=True):
                cached = self._days.get(day)
                if cached is None:
                    cached = self._days[day] = _Day(self.n_counters)
                cached.values[code] = row
                cached.filled[code] = True
                self._days.move_to_end(day)
            while len(self._days) > self.capacity:
                self._days.popitem(last=False)

    async def fill(self, counter_days: list[CounterDay]) -> None:
        """`fill_blocking` in a worker thread; counter-days another request is computing are
        awaited instead of computed twice."""
        waits = {id(f): f for key in counter_days if (f := self._inflight.get(key)) is not None}
        todo = [key for key in counter_days if key not in self._inflight]
        if todo:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for key in todo:
                self._inflight[key] = done
            try:
                await anyio.to_thread.run_sync(self.fill_blocking, todo)
            finally:
                for key in todo:
                    self._inflight.pop(key, None)
                done.set_result(None)  # waiters re-read the cache; a miss falls back
        for waiting in waits.values():
            await asyncio.shield(waiting)

    def _to_fill(
        self, codes: NDArray[np.intp], hours: NDArray[np.int64], miss: NDArray[np.intp]
    ) -> list[CounterDay] | None:
        """The counter-days to compute for the missed rows, None when row by row is cheaper.

        A day asked for a second counter (by this request or since an earlier one) is computed
        for every counter at once: clients that sweep counters (dashboards, back-tests) then
        cost one call per day instead of one per counter-day, while a stream of random hours,
        where a day is rarely asked twice, computes only the counter asked.
        """
        keys = np.unique(np.stack([hours[miss] // HOURS_PER_DAY, codes[miss]], axis=1), axis=0)
        asked = [(int(day), int(code)) for day, code in keys.tolist()]
        per_day = Counter(day for day, _ in asked)
        with self._lock:
            busy = {day for day in per_day if per_day[day] > 1 or day in self._days}
        whole = [(day, code) for day in sorted(busy) for code in range(self.n_counters)]
        widened = whole + [(day, code) for day, code in asked if day not in busy]
        for candidate in (widened, asked) if busy else (asked,):
            if self.worth_filling(candidate, len(miss)):
                return candidate
        return None

    async def predict(self, codes: NDArray[np.intp], hours: NDArray[np.int64]) -> DaysAnswer:
        values, hit = self.lookup(codes, hours)
        if hit.all():
            return DaysAnswer(values, len(hit), 0)
        miss = np.flatnonzero(~hit)
        counter_days = self._to_fill(codes, hours, miss)
        if counter_days is not None:
            await self.fill(counter_days)
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
            counter_days = self._to_fill(codes, hours, miss)
            if counter_days is not None:
                self.fill_blocking(counter_days)
                values[miss], now_hit = self.lookup(codes[miss], hours[miss])
                miss = miss[~now_hit]
            if len(miss):
                values[miss] = self._predict(codes[miss], hours[miss])
        return DaysAnswer(values, len(hit) - len(miss), len(miss))
