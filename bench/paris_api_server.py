"""Serve a Paris counts parquet through the local Explore v2.1 stand-in until interrupted.

    python bench/paris_api_server.py \
        --data /work/shared/data/paris-bike-counts/counts_2020-09-01_2021-08-09.parquet \
        --port 8765 --fail-ratio 0.1

Point the platform at it with `PARIS_OPEN_DATA_URL=http://127.0.0.1:8765`.
"""

from __future__ import annotations

import argparse
import signal
import threading

from bike_assets.sources.fake_paris_api import FakeParisApi, load_parquet_records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="parquet of counts (API field names)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--fail-ratio",
        type=float,
        default=0.0,
        help="share of requests answered 429 or 503 (seeded)",
    )
    parser.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds sent with the random 429s"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    records = load_parquet_records(args.data)
    api = FakeParisApi(
        records,
        fail_ratio=args.fail_ratio,
        retry_after_s=args.retry_after,
        seed=args.seed,
        port=args.port,
    ).start()
    print(
        f"serving {len(records):,} records from {args.data} at {api.url} "
        f"(fail ratio {args.fail_ratio:g}); Ctrl-C to stop",
        flush=True,
    )
    # Stop cleanly on Ctrl-C and on `kill <pid>` (a backgrounded shell job ignores SIGINT).
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    finally:
        api.stop()
        print(f"stopped after {api.requests:,} requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
