"""Backfill of the real Paris snapshot through the `raw_counts` Dagster asset, timed.

    .venv/bin/python bench/ingest.py --data /path/to/counts_2020-09-01_2021-08-09.parquet \
        [--fail-ratio 0.1] [--retry-after 1 0] [--instance sqlite memory] [--days 20] \
        [--repeats 3] [--out bench/results/ingest.md]   2>/dev/null  # Dagster's DEBUG log

The parquet is served as is by `FakeParisApi` (a background thread of this process: server and
client share the GIL, so the figures are conservative). For each fault scenario, in one process:

- reference: the bare `ParisOpenDataClient.fetch` over the same Paris days (no Dagster, no
  DuckDB), production retry/timeout defaults;
- asset: `ingest_job` for the whole partition range in ONE run (`execute_in_process`, fresh
  BIKE_DATA_DIR), i.e. fetch + DuckDB IO manager + the asset checks + Dagster's event log; on a
  sqlite instance (`instance_for_test`, as the local default DAGSTER_HOME) and on an in-memory
  one (`DagsterInstance.ephemeral()`: the difference is the cost of storing the run's events).
  The DuckDB warehouse is then read back and compared with the parquet (row count,
  `(counter, hour)` keys, total of counts).

Both runs of a scenario see the same seeded fault sequence (one request per day, in order). The
ratio asset / reference is the asset + warehouse overhead. With faults, 429s carry `Retry-After`
(`--retry-after`, default both 1 and 0 s: 1 is the honest figure, 0 separates waiting from work;
503s carry none, urllib3 backs off). Target: the whole period in <= 60 s, rows in = rows out.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
from _figures import Figure, write_figures
from _machine import cpu_model, uname_m

ROOT = Path(__file__).resolve().parents[1]

# Settings are read when bike_assets is imported: set them first (the URL and the data dir are
# set again for every run, and definitions are rebuilt from them).
_SCRATCH = tempfile.TemporaryDirectory(prefix="bench-ingest-")
os.environ.update(
    {
        "BIKE_ENV": "local",
        "BIKE_SOURCE": "paris",
        "BIKE_DATA_DIR": str(Path(_SCRATCH.name) / "import"),
        "PARIS_OPEN_DATA_URL": "http://127.0.0.1:9",  # replaced per run
        "BIKE_PARTITIONS_START": "2020-01-01",
    }
)
for _name in (
    "PARIS_MAX_RETRIES",
    "PARIS_RETRY_BUDGET",
    "PARIS_HTTP_TIMEOUT",
    "PROMETHEUS_PUSHGATEWAY_URL",
    "DISCORD_WEBHOOK_URL",
    "MLFLOW_TRACKING_URI",
):
    os.environ.pop(_name, None)  # production defaults, nothing pushed anywhere

_imported = time.perf_counter()
import dagster as dg  # noqa: E402

from bike_assets.definitions import build_definitions  # noqa: E402
from bike_assets.settings import Settings  # noqa: E402
from bike_assets.sources.fake_paris_api import FakeParisApi, load_parquet_records  # noqa: E402
from bike_assets.sources.paris_api import ParisOpenDataClient  # noqa: E402

IMPORT_S = time.perf_counter() - _imported

PARIS = ZoneInfo("Europe/Paris")
FIRST_DAY = date(2020, 9, 1)
LAST_DAY = date(2021, 8, 9)
TARGET_S = 60.0
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
DEFAULT_OUT = ROOT / "bench" / "results" / "ingest.md"


@dataclass
class Scenario:
    fail_ratio: float
    retry_after: int

    @property
    def label(self) -> str:
        if self.fail_ratio == 0:
            return "no faults"
        return f"{self.fail_ratio:.0%} 429/503, Retry-After {self.retry_after} s"


@dataclass
class Outcome:
    what: str
    scenario: Scenario
    seconds: float
    rows_out: int
    rows_in: int
    ok: bool
    statuses: dict[int, int]
    wait_s: float  # time between a failed answer and its retry, from the server's log
    server_busy_s: float
    detail: str = ""
    steps: dict[str, float] = field(default_factory=dict)
    repeat: int = 1
    load_1min: float = 0.0  # load average right after the run


# --- helpers -----------------------------------------------------------------------------------
def paris_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=PARIS)


def held_rows(records: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    """Records whose hour starts inside the Paris days `first..last`, with a UTC `ts`."""
    ts = pd.to_datetime(records["date"], utc=True)
    inside = (ts >= paris_midnight(first)) & (ts < paris_midnight(last + timedelta(days=1)))
    return records.assign(ts=ts).loc[inside]


def sorted_keys(ids: pd.Series, stamps: pd.Series) -> pd.MultiIndex:
    """Sorted `(counter, hour)` keys with one dtype per level, whatever the frame used."""
    utc = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("ns")
    return pd.MultiIndex.from_arrays([ids.astype(str).to_numpy(dtype=object), utc]).sort_values()


def retry_wait_s(api: FakeParisApi) -> float:
    """Seconds from each non-200 answer to the next request (the client's wait, plus noise)."""
    log = sorted(api.log, key=lambda entry: entry.at)
    return sum(nxt.at - cur.at for cur, nxt in itertools.pairwise(log) if cur.status != 200)


@contextmanager
def serving(records: pd.DataFrame, scenario: Scenario, seed: int) -> Iterator[FakeParisApi]:
    with FakeParisApi(
        records,
        fail_ratio=scenario.fail_ratio,
        fail_statuses=(429, 503),
        retry_after_s=scenario.retry_after,
        seed=seed,
    ) as api:
        yield api


def compare(
    frame: pd.DataFrame, held: pd.DataFrame, id_col: str, ts_col: str, count_col: str
) -> tuple[bool, str]:
    same_keys = sorted_keys(frame[id_col], frame[ts_col]).equals(
        sorted_keys(held["id_compteur"], held["ts"])
    )
    same_total = int(frame[count_col].sum()) == int(held["sum_counts"].sum())
    ok = len(frame) == len(held) and same_keys and same_total
    return ok, f"keys {'=' if same_keys else '!='}, sum(count) {'=' if same_total else '!='}"


# --- the two runs ------------------------------------------------------------------------------
def run_reference(
    records: pd.DataFrame,
    held: pd.DataFrame,
    scenario: Scenario,
    first: date,
    last: date,
    seed: int,
) -> Outcome:
    with serving(records, scenario, seed) as api:
        client = ParisOpenDataClient(base_url=api.url)  # production retry/timeout defaults
        started = time.perf_counter()
        batch = client.fetch(paris_midnight(first), paris_midnight(last + timedelta(days=1)))
        seconds = time.perf_counter() - started
        statuses = Counter(entry.status for entry in api.log)
        wait, busy = retry_wait_s(api), api.busy_s
    ok, detail = compare(batch.frame, held, "counter_id", "timestamp", "count")
    ok = ok and batch.dropped == 0
    return Outcome(
        "reference: bare client fetch",
        scenario,
        seconds,
        len(batch.frame),
        len(held),
        ok,
        dict(sorted(statuses.items())),
        wait,
        busy,
        detail,
    )


def phases(instance: dg.DagsterInstance, run_id: str, began: float) -> dict[str, float]:
    """Where the run's wall time went, from its event log (`began`: time.time() at the call)."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type_value
        key = f"{kind}:{entry.step_key}" if kind in ("STEP_START", "STEP_SUCCESS") else kind
        first.setdefault(key, entry.timestamp)
        last[key] = entry.timestamp
    steps = {
        key.split(":", 1)[1]: last.get(f"STEP_SUCCESS:{key.split(':', 1)[1]}", t) - t
        for key, t in first.items()
        if key.startswith("STEP_START:")
    }
    out = {"run creation (planned events)": first.get("PIPELINE_START", began) - began}
    out["raw_counts step"] = steps.pop("raw_counts", 0.0)
    if "ASSET_MATERIALIZATION" in first:
        out["of which materialization events"] = (
            last["ASSET_MATERIALIZATION"] - first["ASSET_MATERIALIZATION"]
        )
    # The four checks are one step that reads the run's days once (partitioned check specs).
    out["checks step (4 checks)"] = sum(steps.values())
    return out


@contextmanager
def dagster_instance(kind: str) -> Iterator[dg.DagsterInstance]:
    if kind == "memory":
        yield dg.DagsterInstance.ephemeral()
    else:
        with dg.instance_for_test() as instance:  # sqlite storage in a temporary DAGSTER_HOME
            yield instance


def run_asset(
    records: pd.DataFrame,
    held: pd.DataFrame,
    scenario: Scenario,
    first: date,
    last: date,
    seed: int,
    data_dir: Path,
    instance_kind: str,
) -> Outcome:
    with serving(records, scenario, seed) as api:
        os.environ["PARIS_OPEN_DATA_URL"] = api.url
        os.environ["BIKE_DATA_DIR"] = str(data_dir)
        settings = Settings.from_env()
        assert settings.paris_url == api.url, settings
        defs = build_definitions(settings)
        job = defs.resolve_job_def("ingest_job")
        with dagster_instance(instance_kind) as instance:
            began, started = time.time(), time.perf_counter()
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
            )
            seconds = time.perf_counter() - started
            steps = phases(instance, result.run_id, began)
            checks = [(c.check_name, c.passed) for c in result.get_asset_check_evaluations()]
        statuses = Counter(entry.status for entry in api.log)
        wait, busy = retry_wait_s(api), api.busy_s

    warehouse = settings.warehouse_path
    if warehouse.exists():
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            stored = conn.execute("SELECT counter_id, timestamp, count FROM bike.raw_counts").df()
    else:
        stored = pd.DataFrame({"counter_id": [], "timestamp": [], "count": []})
    ok, detail = compare(stored, held, "counter_id", "timestamp", "count")
    failed_checks = [name for name, passed in checks if not passed]
    ok = ok and result.success
    detail += f"; run {'succeeded' if result.success else 'FAILED'}; checks " + (
        f"failed: {', '.join(failed_checks)}" if failed_checks else f"{len(checks)} passed"
    )
    return Outcome(
        f"asset: ingest_job, one run, {instance_kind} instance",
        scenario,
        seconds,
        len(stored),
        len(held),
        ok,
        dict(sorted(statuses.items())),
        wait,
        busy,
        detail,
        steps,
    )


# --- machine and report ------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = cpu_model("?")
    arch = uname_m()
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    return {"arch": arch.strip(), "cpu": cpu, "nproc": nproc.strip()}


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def row(o: Outcome, reference: Outcome | None) -> str:
    ratio = f"{o.seconds / reference.seconds:.2f}" if reference and reference.seconds else "1.00"
    statuses = ", ".join(f"{k}: {v}" for k, v in o.statuses.items())
    return (
        f"| {o.scenario.label} | {o.repeat} | {o.what} | {o.seconds:.1f} | {o.wait_s:.1f} "
        f"| {o.seconds - o.wait_s:.1f} | {o.rows_out:,} / {o.rows_in:,} "
        f"| {o.rows_out / o.seconds:,.0f} | {statuses} | {o.server_busy_s:.1f} "
        f"| {o.load_1min:.1f} | {ratio} | {'OK' if o.ok else 'MISMATCH'} |"
    )


def summary(pairs: list[tuple[Outcome, Outcome]]) -> list[str]:
    """One line per scenario and instance: median asset time over the repeats and the verdict."""
    lines = []
    for label, what in dict.fromkeys((a.scenario.label, a.what) for _, a in pairs):
        mine = [(r, a) for r, a in pairs if (a.scenario.label, a.what) == (label, what)]
        times = [a.seconds for _, a in mine]
        ratios = [a.seconds / r.seconds for r, a in mine]
        work = [(a.seconds - a.wait_s) / (r.seconds - r.wait_s) for r, a in mine]
        ok = all(a.ok and r.ok for r, a in mine)
        met = ok and statistics.median(times) <= TARGET_S
        lines.append(
            f"- {label}, {what.split(', ')[-1]}: asset median "
            f"{statistics.median(times):.1f} s (min {min(times):.1f}, "
            f"max {max(times):.1f}, {len(times)} run(s)), x ref median "
            f"{statistics.median(ratios):.2f} (work only {statistics.median(work):.2f}); "
            f"rows in = rows out: {'yes' if ok else 'NO'}; target <= {TARGET_S:.0f} s: "
            f"{'met' if met else 'NOT met'}"
        )
    return lines


def figures(pairs: list[tuple[Outcome, Outcome]], whole_period: bool) -> list[Figure]:
    """Headline figures for run_all.py: the asset's median time beside the bare client's."""
    out = []
    for label, what in dict.fromkeys((a.scenario.label, a.what) for _, a in pairs):
        mine = [(r, a) for r, a in pairs if (a.scenario.label, a.what) == (label, what)]
        ok = all(a.ok and r.ok for r, a in mine)
        asset_s = statistics.median(a.seconds for _, a in mine)
        out.append(
            Figure(
                what=f"raw_counts one-run backfill, {label}, {what.split(', ')[-1]}",
                value=round(asset_s, 2),
                unit="s",
                reference="bare ParisOpenDataClient.fetch, same faults",
                reference_value=round(statistics.median(r.seconds for r, _ in mine), 2),
                target=f"<= {TARGET_S:.0f} s for 343 days, rows in = rows out",
                # the target is for the whole period: a shorter window can only miss it (rows)
                met=(ok and asset_s <= TARGET_S) if whole_period else (None if ok else False),
                note=f"{mine[0][1].rows_in:,} rows, rows in = rows out: {'yes' if ok else 'NO'}",
            )
        )
    return out


def report(pairs: list[tuple[Outcome, Outcome]], meta: dict[str, str]) -> str:
    lines = [
        "# Ingestion benchmark (bench/ingest.py)",
        "",
        f"- date: {meta['date']}",
        f"- machine: `uname -m` {meta['arch']}, {meta['cpu']}, nproc {meta['nproc']}; "
        f"load average (1/5/15 min) at start {meta['load_start']}, at end {meta['load_end']}"
        " (CPU shared with other engineers' work)",
        f"- software: Python {platform.python_version()}, dagster {dg.__version__}, "
        f"duckdb {duckdb.__version__}, pandas {pd.__version__}",
        f"- data: `{meta['data']}` ({meta['records']} records) served as is by "
        "`FakeParisApi` in a thread of the same process (shares the GIL with the client)",
        f"- window: Paris days {meta['first']} .. {meta['last']} ({meta['days']} partitions, "
        "one `exports/json` request per day), `ingest_job` as ONE run (single-run backfill), "
        "fresh DuckDB warehouse per run; sqlite instance = the local default (temporary "
        "DAGSTER_HOME on the same disk), memory instance = events not stored (diagnostic)",
        f"- one-off costs, outside the timings: import of dagster + bike_assets {IMPORT_S:.1f} s, "
        f"parquet -> API records {meta['load_s']} s",
        "- wait s: from each 429/503 answer to its retry, from the server's log; "
        "work s = seconds - wait s",
        "- x ref: asset seconds / bare-client seconds in the same scenario (same seeded faults)",
        "",
        "- load: 1-minute load average right after the run (2 cores: above 2 means waiting)",
        "",
        "| scenario | # | what | seconds | wait s | work s | rows out / in | rows/s "
        "| HTTP statuses | server busy s | load | x ref | check |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    shown: set[int] = set()
    for reference, asset in pairs:
        if id(reference) not in shown:
            shown.add(id(reference))
            lines.append(row(reference, None))
        lines.append(row(asset, reference))
    lines += [
        "",
        *summary(pairs),
        "",
        "Where the asset runs' time went (from each run's event "
        "log; the rest of raw_counts step is the fetch, normalisation and DuckDB write):",
        "",
    ]
    for _, asset in pairs:
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in asset.steps.items())
        lines.append(
            f"- {asset.scenario.label}, {asset.what.split(', ')[-1]} #{asset.repeat}: "
            f"{steps}; {asset.detail}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the counts_*.parquet snapshot")
    parser.add_argument(
        "--fail-ratio",
        type=float,
        nargs="+",
        default=[0.0, 0.1],
        help="share of requests answered 429/503 (default: 0 and 0.1)",
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        nargs="+",
        default=[1, 0],
        help="Retry-After seconds of the 429s, for fault scenarios (default 1 0)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        help="only the first N Paris days from 2020-09-01 (quick run)",
    )
    parser.add_argument(
        "--instance",
        nargs="+",
        choices=["sqlite", "memory"],
        default=["sqlite", "memory"],
        help="Dagster instance(s) for the asset run",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    first = FIRST_DAY
    last = LAST_DAY if args.days is None else min(LAST_DAY, first + timedelta(days=args.days - 1))
    scenarios = [
        Scenario(ratio, after)
        for ratio in args.fail_ratio
        for after in (args.retry_after if ratio > 0 else [0])
    ]
    load_start = load_average()
    loading = time.perf_counter()
    records = load_parquet_records(args.data)
    load_s = time.perf_counter() - loading
    held = held_rows(records, first, last)
    print(
        f"{len(records):,} records loaded in {load_s:.1f} s; Paris days {first} .. {last}: "
        f"{len(held):,} rows; import {IMPORT_S:.1f} s; load average {load_start}",
        flush=True,
    )

    pairs: list[tuple[Outcome, Outcome]] = []
    for repeat in range(1, args.repeats + 1):
        for number, scenario in enumerate(scenarios):
            reference = run_reference(records, held, scenario, first, last, args.seed)
            reference.repeat, reference.load_1min = repeat, os.getloadavg()[0]
            print(row(reference, None), flush=True)
            for kind in args.instance:
                asset = run_asset(
                    records,
                    held,
                    scenario,
                    first,
                    last,
                    args.seed,
                    Path(_SCRATCH.name) / f"run{repeat}-{number}-{kind}",
                    kind,
                )
                asset.repeat, asset.load_1min = repeat, os.getloadavg()[0]
                print(row(asset, reference), flush=True)
                print(f"  {asset.steps}; {asset.detail}", flush=True)
                pairs.append((reference, asset))
    pairs.sort(key=lambda pair: (scenarios.index(pair[1].scenario), pair[1].repeat))

    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **machine(),
        "load_start": load_start,
        "load_end": load_average(),
        "data": args.data.name,
        "records": f"{len(records):,}",
        "first": first,
        "last": last,
        "days": (last - first).days + 1,
        "load_s": f"{load_s:.1f}",
    }
    text = report(pairs, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    write_figures(args.out, figures(pairs, whole_period=(first, last) == (FIRST_DAY, LAST_DAY)))
    print(text)
    _SCRATCH.cleanup()
    return 0 if all(a.ok and r.ok for r, a in pairs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
