"""The real source: Paris Open Data's Explore v2.1 API (`comptage-velo-donnees-compteurs`).

One request per Paris-local day on `exports/json`, which returns the whole selection; the
`records` endpoint caps `offset + limit` at 10,000 and would silently lose rows of a multi-day
window (see docs/paris-open-data-api.md). Retries are urllib3's (429 and 5xx, honouring
`Retry-After`), bounded by a count *and* a per-window time budget.

Dates are requested with `timezone=UTC`: the `where` literals carry explicit Paris offsets so the
selection does not depend on that parameter, and answers in UTC have one fixed offset, so the
repeated 02:00 hour of the autumn DST day can never be misread; storage is UTC anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from zoneinfo import ZoneInfo

import pandas as pd
import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from bike_assets.schema import KEY_COLUMNS, coerce_tidy, empty_tidy, normalize_records
from bike_assets.settings import DATASET_ID, PARIS_TZ
from bike_assets.sources.base import (
    CountsBatch,
    CountsSource,
    FetchProgress,
    ProgressCallback,
    SourceError,
)

PARIS = ZoneInfo(PARIS_TZ)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Backoff doubles per attempt; past this a single wait is not worth more than re-running the job.
BACKOFF_MAX_S = 30.0


class _GaveUpError(MaxRetryError):
    """Retries stopped (count or time budget); remembers how many attempts were made."""

    def __init__(
        self, pool: ConnectionPool | None, url: str | None, reason: Exception | None, attempts: int
    ) -> None:
        super().__init__(pool, url or "", reason)  # type: ignore[arg-type]
        self.attempts = attempts


class _BudgetedRetry(Retry):
    """urllib3 `Retry` that also gives up when the next wait would pass a monotonic deadline.

    urllib3 bounds retries by count only; a long `Retry-After` or a doubling backoff could
    otherwise hold a run for minutes. Raising from `increment` keeps urllib3's own loop in charge:
    for status retries (`raise_on_status=False`) urllib3 then returns the last response, for
    connection/read errors the error surfaces wrapped in this exception. The check runs between
    attempts, so a window can overrun its budget by at most one attempt (its timeouts).
    """

    def __init__(self, *args: Any, deadline: float = float("inf"), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw: Any) -> Self:
        kw.setdefault("deadline", self.deadline)
        return super().new(**kw)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: Any = None,
    ) -> Self:
        attempts = len(self.history) + 1
        try:
            nxt = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:
            raise _GaveUpError(_pool, url, exc.reason, attempts) from exc.reason
        wait = nxt.get_backoff_time()
        if response is not None and nxt.respect_retry_after_header:
            wait = nxt.get_retry_after(response) or wait
        if time.monotonic() + wait > self.deadline:
            raise _GaveUpError(_pool, url, error or _budget_error(response), attempts)
        return nxt

    def parse_retry_after(self, retry_after: str) -> float:
        # urllib3 raises on a garbled header, outside requests' exceptions; back off instead.
        try:
            return super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0.0


def _budget_error(response: BaseHTTPResponse | None) -> Exception:
    status = response.status if response is not None else "?"
    return RuntimeError(f"retry budget exhausted (last status {status})")


class ParisOpenDataClient(CountsSource):
    """Hourly counts of `[start, end)` from opendata.paris.fr, one `exports/json` call per day."""

    base_url: str = "https://opendata.paris.fr"
    timeout_s: float = 30.0
    max_retries: int = 5
    retry_budget_s: float = 120.0
    backoff_factor: float = 0.5
    dataset: str = DATASET_ID
    # Days fetched at once. Small on purpose (the portal rate-limits); it overlaps network
    # latency and Retry-After waits of a backfill instead of paying them one after another.
    max_concurrent_days: int = 4

    def fetch(
        self, start: datetime, end: datetime, progress: ProgressCallback | None = None
    ) -> CountsBatch:
        """Every count whose hour starts in `[start, end)`; raises `SourceError` on any failure.

        `requests` in the batch counts HTTP attempts, retries included. `progress` is called
        after each day, in day order, as soon as that day and every day before it are in.
        """
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("fetch needs tz-aware datetimes")
        if start >= end:
            return CountsBatch(frame=empty_tidy())

        days = list(paris_day_windows(start, end))
        workers = max(1, min(self.max_concurrent_days, len(days)))
        results: list[tuple[pd.DataFrame, dict[str, int], int]] = []
        rows = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paris-api") as pool:
            # One pool for the whole window, so waits (Retry-After, backoff) of some days overlap
            # with the fetch of others. Collected in day order: the first failing day's
            # SourceError is re-raised here.
            futures = [pool.submit(self._fetch_day, *window) for window in days]
            try:
                for future in futures:
                    results.append(future.result())
                    rows += len(results[-1][0])
                    if progress is not None:
                        progress(FetchProgress(len(results), len(days), rows))
            except BaseException:
                for future in futures:  # the run fails anyway: do not start the days left
                    future.cancel()
                raise
        frames = [frame for frame, _, _ in results]
        attempts = sum(n for _, _, n in results)
        reasons: dict[str, int] = {}
        for _, day_reasons, _ in results:
            for reason, count in day_reasons.items():
                reasons[reason] = reasons.get(reason, 0) + count

        frame = pd.concat(frames, ignore_index=True) if frames else empty_tidy()
        before = len(frame)
        frame = frame.drop_duplicates(KEY_COLUMNS, keep="last")
        if len(frame) < before:
            reasons["duplicate_key"] = reasons.get("duplicate_key", 0) + before - len(frame)
        return CountsBatch(
            frame=coerce_tidy(frame),
            dropped=sum(reasons.values()),
            drop_reasons=reasons,
            requests=attempts,
        )

    def _retry(self, deadline: float) -> _BudgetedRetry:
        return _BudgetedRetry(
            total=self.max_retries,
            connect=self.max_retries,
            read=self.max_retries,
            status=self.max_retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods={"GET"},
            backoff_factor=self.backoff_factor,
            backoff_max=BACKOFF_MAX_S,
            respect_retry_after_header=True,
            raise_on_status=False,  # we turn the last response into a SourceError ourselves
            deadline=deadline,
        )

    def _fetch_day(
        self, day_start: datetime, day_end: datetime
    ) -> tuple[pd.DataFrame, dict[str, int], int]:
        """One Paris day: tidy rows, drop reasons, HTTP attempts. Own session per call, since
        the retry budget lives on the session's adapter and days run in parallel."""
        deadline = time.monotonic() + self.retry_budget_s
        adapter = HTTPAdapter(max_retries=self._retry(deadline))
        with requests.Session() as session:
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update({"Accept": "application/json", "User-Agent": "bike-traffic"})
            records, attempts = self._get_day(session, day_start, day_end, deadline)
        norm = normalize_records(records)
        frame, reasons = norm.frame, dict(norm.drop_reasons)
        # Guard against a server that reads the literals in another timezone: a row outside
        # the window would land in the wrong daily partition.
        inside = (frame["timestamp"] >= day_start) & (frame["timestamp"] < day_end)
        if not inside.all():
            reasons["outside_window"] = reasons.get("outside_window", 0) + int((~inside).sum())
            frame = frame.loc[inside]
        return frame, reasons, attempts

    def _get_day(
        self, session: requests.Session, start: datetime, end: datetime, deadline: float
    ) -> tuple[list[Any], int]:
        """The records of one window and the number of HTTP attempts it took."""
        window = f"window [{start.isoformat()}, {end.isoformat()}) {PARIS_TZ}"
        url = (
            f"{self.base_url.rstrip('/')}/api/explore/v2.1/catalog/datasets/"
            f"{self.dataset}/exports/json"
        )
        params = {
            "where": f"date >= '{start.isoformat()}' and date < '{end.isoformat()}'",
            "timezone": "UTC",
            "order_by": "date",
        }
        # urllib3 retries the request, not the reading of the body: a connection dropped
        # mid-body (fewer bytes than Content-Length) surfaces here. It is as transient as a 503,
        # so it gets the same bounds (max_retries, the window's time budget) and backoff.
        cut_short = 0
        while True:
            try:
                resp = session.get(url, params=params, timeout=(self.timeout_s, self.timeout_s))
                break
            except requests.exceptions.ChunkedEncodingError as exc:
                cut_short += 1
                wait = min(BACKOFF_MAX_S, self.backoff_factor * 2 ** (cut_short - 1))
                if cut_short > self.max_retries or time.monotonic() + wait > deadline:
                    raise SourceError(
                        f"Paris API {window}: body cut short {cut_short} time(s) "
                        f"(max_retries={self.max_retries}, budget {self.retry_budget_s:g} s): "
                        f"{exc}"
                    ) from exc
                time.sleep(wait)
            except requests.RequestException as exc:
                raise SourceError(f"Paris API {window}: {_describe(exc, self)}") from exc

        retries = getattr(resp.raw, "retries", None)
        attempts = (len(retries.history) + 1 if retries is not None else 1) + cut_short
        if resp.status_code in RETRY_STATUSES:
            raise SourceError(
                f"Paris API {window}: gave up after {attempts} attempt(s) "
                f"(max_retries={self.max_retries}, budget {self.retry_budget_s:g} s), "
                f"last status {resp.status_code}"
            )
        if resp.status_code >= 400:
            raise SourceError(f"Paris API {window}: {_api_error(resp)}")
        try:
            body = json.loads(resp.content)
        except ValueError as exc:
            raise SourceError(
                f"Paris API {window}: malformed body, not JSON "
                f"(HTTP {resp.status_code}, starts {resp.content[:80]!r})"
            ) from exc
        if not isinstance(body, list):
            raise SourceError(
                f"Paris API {window}: malformed body, expected a JSON array of records, "
                f"got {type(body).__name__}"
            )
        return body, attempts


def paris_day_windows(start: datetime, end: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Split `[start, end)` at Paris midnights; DST days come out 23 or 25 hours long.

    Midnights are built from calendar dates in Europe/Paris (never `+ 24 h`, which would drift
    by an hour across a DST change). Paris changes clocks at 02:00/03:00, so midnight exists.
    """
    # Compare instants in UTC: Python compares two datetimes sharing a tzinfo by wall time,
    # ignoring `fold`, which would misorder times inside the repeated autumn hour.
    stop_utc = end.astimezone(UTC)
    cursor = start.astimezone(PARIS)
    while cursor.astimezone(UTC) < stop_utc:
        next_day = cursor.date() + timedelta(days=1)
        midnight = datetime(next_day.year, next_day.month, next_day.day, tzinfo=PARIS)
        upper = midnight if midnight.astimezone(UTC) < stop_utc else end.astimezone(PARIS)
        yield cursor, upper
        cursor = upper


def _api_error(resp: requests.Response) -> str:
    """`HTTP 400 <error_code>: <message>` from the API's JSON error body, or the raw text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("message" in body or "error_code" in body):
        return f"HTTP {resp.status_code} {body.get('error_code', '')}: {body.get('message', '')}"
    return f"HTTP {resp.status_code}: {resp.text[:200]!r}"


def _describe(exc: requests.RequestException, client: ParisOpenDataClient) -> str:
    """Say why a request produced no response, with the attempt count urllib3 reached."""
    inner = exc.args[0] if exc.args else None
    attempts = inner.attempts if isinstance(inner, _GaveUpError) else None
    reason = inner.reason if isinstance(inner, MaxRetryError) else inner
    after = f" after {attempts} attempt(s)" if attempts else ""
    if isinstance(reason, (NewConnectionError, NameResolutionError)):
        return f"API unreachable at {client.base_url}{after}: {reason}"
    if isinstance(reason, ConnectTimeoutError):
        return f"API unreachable at {client.base_url} (connect timeout{after}): {reason}"
    if isinstance(reason, ReadTimeoutError) or isinstance(exc, requests.Timeout):
        return f"no response within {client.timeout_s:g} s{after}"
    return f"request failed{after}: {exc}"
