"""`bike`: the command line. It only parses arguments: `bike demo` runs the platform end to end
offline on the synthetic city (bike_assets.demo), `bike stack` the production topology without
Docker (bike_assets.stack).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bike",
        description="`bike demo`: the whole platform offline, end to end, on the synthetic city.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the platform end to end offline on the synthetic city")
    p.add_argument("--days", type=int, default=105, help="days of counts to ingest (default 105)")
    p.add_argument(
        "--drift-days-ago",
        type=int,
        default=35,
        help="the drift event starts this many days before today (default 35)",
    )
    p.add_argument("--today", default=None, help="pretend today is this date (YYYY-MM-DD)")
    p.add_argument("--forecast-hours", type=int, default=24)
    p.add_argument("--fresh", action="store_true", help="delete BIKE_DATA_DIR first")
    s = sub.add_parser("stack", help="the production topology without Docker: up | status | down")
    s.add_argument("stack_args", nargs=argparse.REMAINDER, help="up [--only ...] | status | down")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from bike_assets.demo.story import run

        return run(args)
    if args.command == "stack":
        from bike_assets.stack import main as stack_main

        return stack_main(args.stack_args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
