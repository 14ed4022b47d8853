"""A real HTTP stand-in for Paris Open Data's Explore v2.1 API, for tests and benchmarks.

`FakeParisApi(records).start()` serves an in-memory frame of `comptage-velo-donnees-compteurs`
records (API field names) on 127.0.0.1 from a background `ThreadingHTTPServer`:

- `GET /api/explore/v2.1/catalog/datasets/<dataset>/exports/json`: the whole selection as a JSON
  array (no offset cap), honouring `where` (date comparisons joined by `and`), `timezone`,
  `order_by` (`date`, `date asc|desc`), `select` and `limit` (-1 = everything).
- `GET .../records`: `{"total_count", "results"}` with the real `limit` (-1..100) and
  `offset + limit <= 10000` checks and error bodies.

Dates are rendered in the requested `timezone` with their offset, as the portal does. Faults are
injected per test with `enqueue(CannedResponse...)` (consumed first in, first out by the next
requests) or at random with `fail_ratio` (seeded). Every request is logged (`log`, `requests`).

It lives in the package, beside the real client, because both the tests and the benchmarks
(`bench/ingest.py`, `bench/paris_api_server.py`) serve data through it and benchmarks must not
import test code (issue #10); it is the offline twin of `paris_api.ParisOpenDataClient`'s server.
Nothing in the platform's code paths imports it.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from bike_assets.sources.background_server import BackgroundHTTPServer

DATASET = "comptage-velo-donnees-compteurs"
PARIS = ZoneInfo("Europe/Paris")
API_FIELDS: list[str] = [
    "id_compteur",
    "nom_compteur",
    "id",
    "name",
    "sum_counts",
    "date",
    "installation_date",
    "url_photos_n1",
    "coordinates",
    "counter",
    "photos",
    "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1",
    "url_sites",
    "type_dimage",
    "mois_annee_comptage",
]
RECORDS_MAX_LIMIT = 100
OFFSET_CAP = 10_000
_PREFIX = "/api/explore/v2.1/catalog/datasets/"
_TERM = re.compile(r"^\(?\s*date\s*(>=|<=|>|<|=)\s*(?:date\s*)?'([^']*)'\s*\)?$", re.IGNORECASE)


@dataclass(frozen=True)
class CannedResponse:
    """One scripted answer. `body=None` means "answer the request normally" (after `delay_s`)."""

    status: int = 200
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # Send only this many bytes of the answer, then close: Content-Length still announces the
    # whole body, as when a connection drops mid-transfer.
    cut_after: int | None = None

    @classmethod
    def rate_limited(cls, retry_after: int | None = 1) -> CannedResponse:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls.api_error(429, "TooManyRequests", "Too many requests", headers=headers)

    @classmethod
    def unavailable(cls, status: int = 503) -> CannedResponse:
        return cls(
            status=status,
            body=b"<html><body>Service Unavailable</body></html>",
            headers={"Content-Type": "text/html"},
        )

    @classmethod
    def api_error(
        cls,
        status: int = 400,
        error_code: str = "ODSQLError",
        message: str = "Bad query",
        headers: Mapping[str, str] | None = None,
    ) -> CannedResponse:
        body = json.dumps({"error_code": error_code, "message": message}).encode()
        return cls(status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def malformed(cls, body: bytes = b"<html>not json", status: int = 200) -> CannedResponse:
        return cls(status=status, body=body, headers={"Content-Type": "application/json"})

    @classmethod
    def truncated(cls, keep_bytes: int = 200) -> CannedResponse:
        """The normal answer cut after `keep_bytes` bytes (the connection drops mid-body)."""
        return cls(cut_after=keep_bytes)

    @classmethod
    def slow(cls, delay_s: float) -> CannedResponse:
        """Sleep `delay_s`, then answer normally: longer than the client timeout, it times out."""
        return cls(delay_s=delay_s)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    params: dict[str, str]
    status: int
    at: float  # time.monotonic() when the request arrived


class _BadRequestError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


class FakeParisApi(BackgroundHTTPServer):
    """The API over HTTP on 127.0.0.1, backed by `records` (API field names, any row order).

    `records["date"]` may hold tz-aware timestamps or ISO strings; an unparseable date is served
    as is and never matches a date comparison (as with the portal's typed field).
    """

    thread_name = "fake-paris-api"

    def __init__(
        self,
        records: pd.DataFrame,
        *,
        dataset: str = DATASET,
        fail_ratio: float = 0.0,
        fail_statuses: Sequence[int] = (429, 503),
        retry_after_s: int | None = 1,
        seed: int = 0,
        port: int = 0,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.fail_ratio = fail_ratio
        self.fail_statuses = tuple(fail_statuses)
        self.retry_after_s = retry_after_s
        self._rng = random.Random(seed)
        self._port = port
        self._queue: deque[CannedResponse] = deque()
        self._log: list[LoggedRequest] = []
        self.busy_s = 0.0  # time spent building answers (shares the GIL with an in-process client)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._load(records)

    # ---- data -------------------------------------------------------------------------------
    def _load(self, records: pd.DataFrame) -> None:
        frame = records.reset_index(drop=True).copy()
        for name in API_FIELDS:
            if name not in frame.columns:
                frame[name] = None
        raw = frame["date"]
        if isinstance(raw.dtype, pd.DatetimeTZDtype):
            utc = raw.dt.tz_convert("UTC")
        else:
            strings = raw.where(raw.map(lambda v: isinstance(v, str)))
            utc = pd.to_datetime(strings, utc=True, errors="coerce", format="ISO8601")
        # Valid dates first, sorted, so a date range is a searchsorted slice of that prefix.
        keys = pd.DataFrame({"na": utc.isna(), "ts": utc, "id": frame["id_compteur"].astype(str)})
        order = keys.sort_values(["na", "ts", "id"], kind="mergesort").index.to_numpy()
        frame = frame.iloc[order].reset_index(drop=True)
        utc = utc.iloc[order].reset_index(drop=True)
        self._valid = int(utc.notna().sum())
        # ns since epoch, whatever unit the input had (parquet gives µs)
        self._ns = utc.iloc[: self._valid].dt.as_unit("ns").astype("int64").to_numpy()
        raw_dates = frame["date"].astype(object)
        self._raw_dates = raw_dates.where(raw_dates.notna(), None).to_numpy(dtype=object)
        obj = frame[API_FIELDS].astype(object)
        obj = obj.where(obj.notna(), None)
        # Plain object arrays per field: zipping them into dicts is ~4x faster than to_dict.
        self._columns: dict[str, np.ndarray] = {
            f: obj[f].to_numpy(dtype=object) for f in API_FIELDS
        }
        self._rows = len(obj)
        self._rendered: dict[str, np.ndarray] = {}

    def _dates_in(self, tz: str) -> np.ndarray:
        """Every row's `date` as the portal renders it in `tz` (cached per timezone)."""
        with self._lock:
            if tz not in self._rendered:
                codes, uniques = pd.factorize(self._ns)
                zone = ZoneInfo(tz)
                text = np.array(
                    [pd.Timestamp(int(v), tz="UTC").tz_convert(zone).isoformat() for v in uniques],
                    dtype=object,
                )
                out = self._raw_dates.copy()
                if len(codes):
                    out[: self._valid] = text[codes]
                self._rendered[tz] = out
            return self._rendered[tz]

    def _select(self, params: Mapping[str, str]) -> tuple[np.ndarray, str]:
        """Row positions matching `where`, in `order_by` order, and the timezone to render in."""
        tz = params.get("timezone", "UTC") or "UTC"
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise _BadRequestError(
                400, "InvalidRESTParameterError", f"Unknown timezone {tz!r}"
            ) from exc
        where = params.get("where", "").strip()
        if where:
            lo, hi = 0, self._valid
            for term in re.split(r"\s+and\s+", where, flags=re.IGNORECASE):
                match = _TERM.match(term.strip())
                if not match:
                    raise _BadRequestError(
                        400, "ODSQLError", f"Unsupported where term for this stand-in: {term!r}"
                    )
                op, literal = match.groups()
                ns = _literal_ns(literal, zone)
                left = int(np.searchsorted(self._ns, ns, side="left"))
                right = int(np.searchsorted(self._ns, ns, side="right"))
                if op in (">=", "="):
                    lo = max(lo, left)
                if op == ">":
                    lo = max(lo, right)
                if op in ("<=", "="):
                    hi = min(hi, right)
                if op == "<":
                    hi = min(hi, left)
            rows = np.arange(lo, max(lo, hi))
        else:
            rows = np.arange(self._rows)
        order = " ".join(params.get("order_by", "").lower().split())
        if order in ("date desc", "-date"):
            rows = rows[::-1]
        elif order not in ("", "date", "date asc"):
            raise _BadRequestError(
                400, "ODSQLError", f"Unsupported order_by for this stand-in: {order!r}"
            )
        return rows, tz

    def _render(self, rows: np.ndarray, tz: str, select: str) -> list[dict[str, Any]]:
        fields = [f.strip() for f in select.split(",") if f.strip()] if select else API_FIELDS
        unknown = [f for f in fields if f not in API_FIELDS and f != "*"]
        if unknown:
            raise _BadRequestError(400, "ODSQLError", f"Unknown field: {unknown[0]}")
        if "*" in fields:
            fields = API_FIELDS
        columns = [(self._dates_in(tz) if f == "date" else self._columns[f])[rows] for f in fields]
        return [dict(zip(fields, values, strict=True)) for values in zip(*columns, strict=True)]

    # ---- endpoints --------------------------------------------------------------------------
    def _answer(self, path: str, params: Mapping[str, str]) -> tuple[int, Any]:
        if not path.startswith(_PREFIX):
            raise _BadRequestError(404, "NotFound", f"Unknown path {path}")
        dataset, _, endpoint = path[len(_PREFIX) :].partition("/")
        if dataset != self.dataset:
            raise _BadRequestError(404, "UnknownDatasetError", f"Unknown dataset: {dataset}")
        if endpoint == "exports/json":
            rows, tz = self._select(params)
            limit = _int_param(params, "limit", -1)
            if limit >= 0:
                rows = rows[:limit]
            return 200, self._render(rows, tz, params.get("select", ""))
        if endpoint == "records":
            limit = _int_param(params, "limit", 10)
            offset = _int_param(params, "offset", 0)
            if not -1 <= limit <= RECORDS_MAX_LIMIT:
                raise _BadRequestError(
                    400,
                    "InvalidRESTParameterError",
                    f"Invalid value for limit API parameter: {limit} was found but "
                    f"-1 <= limit <= {RECORDS_MAX_LIMIT} is expected.",
                )
            if offset < 0:
                raise _BadRequestError(
                    400,
                    "InvalidRESTParameterError",
                    f"Invalid value for offset API parameter: {offset} was found "
                    "but >= 0 is expected.",
                )
            size = RECORDS_MAX_LIMIT if limit == -1 else limit
            if offset + size > OFFSET_CAP:
                raise _BadRequestError(
                    400,
                    "InvalidRESTParameterError",
                    "Invalid value for sum of offset + limit API parameter: "
                    f"{offset + size} was found but <= {OFFSET_CAP} is expected.",
                )
            rows, tz = self._select(params)
            results = self._render(rows[offset : offset + size], tz, params.get("select", ""))
            return 200, {"total_count": len(rows), "results": results}
        raise _BadRequestError(404, "NotFound", f"Unknown endpoint {endpoint!r}")

    def _next_fault(self) -> CannedResponse | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self.fail_ratio > 0 and self._rng.random() < self.fail_ratio:
                status = self._rng.choice(self.fail_statuses)
                if status == 429:
                    return CannedResponse.rate_limited(self.retry_after_s)
                return CannedResponse.unavailable(status)
            return None

    def handle(
        self, method: str, target: str
    ) -> tuple[int, dict[str, str], bytes, float, int | None]:
        """Status, headers, body, pre-answer delay and bytes to send before dropping the
        connection (None: all) for one request (also logs it)."""
        arrived = time.monotonic()
        split = urlsplit(target)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        fault = self._next_fault()
        headers = {"Content-Type": "application/json; charset=utf-8"}
        delay = fault.delay_s if fault else 0.0
        if fault is not None and fault.body is not None:
            status, body = fault.status, fault.body
            headers.update(fault.headers)
        elif method != "GET":
            status, body = 405, _error_body("MethodNotAllowed", f"{method} is not allowed")
        else:
            try:
                status, payload = self._answer(split.path, params)
                body = json.dumps(payload, ensure_ascii=False, default=_json_default).encode()
            except _BadRequestError as exc:
                status, body = exc.status, _error_body(exc.error_code, exc.message)
            except Exception as exc:  # a stand-in bug must show up as a 500, not a dead socket
                status, body = 500, _error_body("InternalError", repr(exc))
        with self._lock:
            self._log.append(LoggedRequest(method, split.path, params, status, arrived))
            self.busy_s += time.monotonic() - arrived
        return status, headers, body, delay, fault.cut_after if fault else None

    # ---- control ----------------------------------------------------------------------------
    def enqueue(self, *responses: CannedResponse) -> None:
        """Answer the next requests with these, in order, before any normal answer."""
        with self._lock:
            self._queue.extend(responses)

    def sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep (a slow answer); True when `stop()` interrupted it."""
        return self._stopping.wait(seconds)

    def reset(self) -> None:
        """Forget the request log and any queued responses."""
        with self._lock:
            self._queue.clear()
            self._log.clear()

    @property
    def log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> int:
        """How many requests the server has received."""
        with self._lock:
            return len(self._log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _make_server(self) -> ThreadingHTTPServer:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.api = self
        return server

    def start(self) -> Self:
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a slow response
        super().stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeParisApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the portal; every answer has Content-Length
    # Headers and body go out in separate writes; with Nagle on, the body waits ~40 ms for the
    # client's delayed ACK on every request.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        api = self.server.api
        status, headers, body, delay, cut_after = api.handle(method, self.path)
        if delay and api.sleep_unless_stopped(delay):
            return
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if cut_after is None:
                self.wfile.write(body)
            else:
                self.wfile.write(body[:cut_after])
                self.wfile.flush()
                self.close_connection = True  # the client sees the body end early
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout) before the slow answer came: what a real one sees too.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _literal_ns(literal: str, zone: ZoneInfo) -> int:
    """An ODSQL date literal as ns since epoch; literals without offset are read in `zone`."""
    text = literal.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _BadRequestError(400, "ODSQLError", f"Invalid date literal: {literal!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return int(pd.Timestamp(moment).value)


def _int_param(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise _BadRequestError(
            400, "InvalidRESTParameterError", f"Invalid value for {name} API parameter: {raw!r}"
        ) from exc


def _error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ---- data helpers -------------------------------------------------------------------------------
def paris_day_hours(day: date) -> pd.DatetimeIndex:
    """UTC starts of every hour of a Paris calendar day (23 in spring DST, 25 in autumn)."""
    start = pd.Timestamp(datetime.combine(day, datetime.min.time(), tzinfo=PARIS))
    nxt = day + timedelta(days=1)
    end = pd.Timestamp(datetime.combine(nxt, datetime.min.time(), tzinfo=PARIS))
    return pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h", inclusive="left")


def make_records(days: Iterable[date], counters: int = 3, seed: int = 0) -> pd.DataFrame:
    """Deterministic API records: every hour of the given Paris days for `counters` counters."""
    rng = np.random.default_rng(seed)
    day_hours = [paris_day_hours(d) for d in days]
    hours = pd.DatetimeIndex(day_hours[0].append(day_hours[1:]) if day_hours else [], tz="UTC")
    frames = []
    for k in range(counters):
        site = f"1000{k:05d}"
        frames.append(
            pd.DataFrame(
                {
                    "id_compteur": f"{site}-1010{k:05d}",
                    "nom_compteur": f"{k} boulevard Test E-O",
                    "id": site,
                    "name": f"{k} boulevard Test",
                    "sum_counts": rng.integers(0, 400, size=len(hours)),
                    "date": hours,
                    "installation_date": "2019-01-01",
                    "coordinates": [{"lon": 2.3 + k / 1000, "lat": 48.85 + k / 1000}] * len(hours),
                    "counter": f"Y2H{k:08d}",
                    "mois_annee_comptage": hours.tz_convert(PARIS).strftime("%Y-%m"),
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=API_FIELDS)
    return to_api_records(pd.concat(frames, ignore_index=True))


def to_api_records(frame: pd.DataFrame) -> pd.DataFrame:
    """API-shaped records from a tidy frame (`counter_id`, `timestamp`, `count`, ...), from the
    flat parquet (API names, `lat`/`lon`, UTC `date`) or from records already API-shaped."""
    if "counter_id" in frame.columns:
        ts = pd.to_datetime(frame["timestamp"], utc=True)
        frame = pd.DataFrame(
            {
                "id_compteur": frame["counter_id"],
                "nom_compteur": frame.get("counter_name"),
                "id": frame.get("site_id"),
                "name": frame.get("site_name"),
                "sum_counts": frame["count"],
                "date": ts,
                "installation_date": frame.get("installation_date"),
                "lat": frame.get("lat"),
                "lon": frame.get("lon"),
                "mois_annee_comptage": ts.dt.tz_convert(PARIS).dt.strftime("%Y-%m"),
            }
        )
    out = frame.copy()
    if "lat" in out.columns or "lon" in out.columns:
        lat = out["lat"] if "lat" in out.columns else pd.Series(np.nan, index=out.index)
        lon = out["lon"] if "lon" in out.columns else pd.Series(np.nan, index=out.index)
        # One dict per distinct position, shared by its rows: ~1M rows would otherwise mean ~1M
        # dicts. The server only reads them.
        pairs = pd.MultiIndex.from_arrays([lat, lon])
        codes, uniques = pd.factorize(pairs)
        dicts = [
            None if pd.isna(la) or pd.isna(lo) else {"lon": float(lo), "lat": float(la)}
            for la, lo in uniques
        ]
        out["coordinates"] = pd.Series(
            [dicts[c] if c >= 0 else None for c in codes], index=out.index, dtype=object
        )
        out = out.drop(columns=[c for c in ("lat", "lon") if c in out.columns])
    for name in API_FIELDS:
        if name not in out.columns:
            out[name] = None
    return out[API_FIELDS].reset_index(drop=True)


def load_parquet_records(path: str | Path) -> pd.DataFrame:
    """The shared snapshot (`counts_*.parquet`: API names, flat lat/lon, UTC `date`) as records."""
    return to_api_records(pd.read_parquet(path))
