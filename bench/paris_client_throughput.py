"""How long `ParisOpenDataClient.fetch` takes for the whole shared snapshot, in-process.

Serves the parquet through `FakeParisApi` on 127.0.0.1 (background thread of this process, so
server and client share the GIL: a conservative figure), fetches 2020-09-01..2021-08-10 (Paris
days, end exclusive) with the client's production defaults, once without faults and once with
a share of requests answered 429 (Retry-After) or 503, and checks rows in == rows out.

    python bench/paris_client_throughput.py [--fail-ratios 0 0.1] [--retry-after 1]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from bike_assets.sources.fake_paris_api import FakeParisApi, load_parquet_records
from bike_assets.sources.paris_api import ParisOpenDataClient

PARIS = ZoneInfo("Europe/Paris")
START = datetime(2020, 9, 1, tzinfo=PARIS)
END = datetime(2021, 8, 10, tzinfo=PARIS)


def _keys(ids: pd.Series, stamps: pd.Series) -> pd.MultiIndex:
    """Sorted `(counter, hour)` keys with one dtype per level, whatever the frame used."""
    index = pd.MultiIndex.from_arrays(
        [ids.astype(str).to_numpy(dtype=object), pd.DatetimeIndex(stamps).as_unit("ns")]
    )
    return index.sort_values()


def run(records: pd.DataFrame, fail_ratio: float, retry_after: int, seed: int) -> bool:
    held = records.assign(ts=pd.to_datetime(records["date"], utc=True))
    held = held[(held["ts"] >= START) & (held["ts"] < END)]
    with FakeParisApi(records, fail_ratio=fail_ratio, retry_after_s=retry_after, seed=seed) as api:
        client = ParisOpenDataClient(base_url=api.url)  # production retry/timeout defaults
        started = time.perf_counter()
        batch = client.fetch(START, END)
        seconds = time.perf_counter() - started
        statuses = Counter(entry.status for entry in api.log)
        server_s = api.busy_s

    frame = batch.frame
    same_keys = _keys(frame["counter_id"], frame["timestamp"]).equals(
        _keys(held["id_compteur"], held["ts"])
    )
    same_total = int(frame["count"].sum()) == int(held["sum_counts"].sum())
    ok = len(frame) == len(held) and same_keys and same_total and batch.dropped == 0
    print(
        f"fail ratio {fail_ratio:>4g}: {seconds:7.2f} s  {len(frame):>9,} rows out / "
        f"{len(held):,} held  ({len(frame) / seconds:,.0f} rows/s)  "
        f"HTTP attempts {batch.requests} (server saw {dict(sorted(statuses.items()))}, "
        f"busy {server_s:.1f} s of it)  "
        f"{'OK' if ok else 'MISMATCH'}",
        flush=True,
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the counts_*.parquet snapshot")
    parser.add_argument("--fail-ratios", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds sent with the random 429s"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    loaded = time.perf_counter()
    records = load_parquet_records(args.data)
    print(
        f"loaded {len(records):,} records in {time.perf_counter() - loaded:.1f} s; "
        f"window [{START.isoformat()}, {END.isoformat()})",
        flush=True,
    )
    results = [run(records, ratio, args.retry_after, args.seed) for ratio in args.fail_ratios]
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
