"""Compare the synthetic source with the real Paris counts and write a Markdown report.

    .venv/bin/python bench/calibrate_synthetic.py \
        --data ../shared/data/paris-bike-counts/counts_2020-09-01_2021-08-09.parquet

The real data is only read (never copied into the repository). The synthetic city is generated
over the same period with the same number of counters as the real extract (52) and with the
platform default (80).

Timestamps of the real extract: the copy corrected on 2026-11-30 stores true UTC instants (weekday
peaks at 08-09h and 18-19h Paris time in both seasons), so they are used as stored. The first copy
was shifted by the Paris UTC offset (peaks at 07h/16-17h in winter, 06h/16h in summer);
`--repair-timestamps` applies the old repair (`stored -> Paris wall clock -> read as UTC`) for
such a copy. The report shows the weekday peak hours per UTC offset either way, as evidence.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd
from _machine import cpu_model

from bike_assets.settings import PARIS_TZ
from bike_assets.sources.synthetic import generate_counts

PARIS = ZoneInfo(PARIS_TZ)
PERIOD_START = datetime(2020, 9, 1, tzinfo=PARIS)
PERIOD_END = datetime(2021, 8, 10, tzinfo=PARIS)
LOCKDOWN = (pd.Timestamp("2020-10-30", tz=PARIS_TZ), pd.Timestamp("2020-12-16", tz=PARIS_TZ))
QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90, 0.99)
DEFAULT_OUT = Path(__file__).parent / "results" / "synthetic_calibration.md"


@dataclass(frozen=True)
class Summary:
    label: str
    rows: int
    counters: int
    mean: float
    quantiles: dict[float, float]
    max: int
    zero_share: float
    zero_share_night: float
    zero_share_day: float
    weekday_profile: np.ndarray
    weekend_profile: np.ndarray
    monthly_mean: pd.Series
    day_type_mean: dict[str, float]


def load_real(path: Path, raw_timestamps: bool) -> pd.DataFrame:
    """The real counts; `raw_timestamps=False` applies the repair the old, shifted copy needed."""
    real = pd.read_parquet(path, columns=["id_compteur", "sum_counts", "date"])
    ts = pd.to_datetime(real["date"], utc=True)
    if not raw_timestamps:
        ts = ts.dt.tz_convert(PARIS_TZ).dt.tz_localize(None).dt.tz_localize("UTC")
    return pd.DataFrame(
        {"counter_id": real["id_compteur"], "timestamp": ts, "count": real["sum_counts"]}
    )


def summarise(label: str, frame: pd.DataFrame) -> Summary:
    count = frame["count"].to_numpy()
    local = frame["timestamp"].dt.tz_convert(PARIS_TZ)
    hour = local.dt.hour.to_numpy()
    weekday = local.dt.weekday.to_numpy()
    day = local.dt.date
    years = sorted({d.year for d in day.iloc[[0, -1]]} | {2020, 2021})
    public = np.asarray(day.isin(set(holidays.France(years=years))))
    workday = (weekday < 5) & ~public

    def profile(mask: np.ndarray) -> np.ndarray:
        prof = pd.Series(count[mask]).groupby(hour[mask]).mean().reindex(range(24)).to_numpy()
        return prof / prof.mean()

    return Summary(
        label=label,
        rows=len(frame),
        counters=frame["counter_id"].nunique(),
        mean=float(count.mean()),
        quantiles={q: float(np.quantile(count, q)) for q in QUANTILES},
        max=int(count.max()),
        zero_share=float((count == 0).mean()),
        zero_share_night=float((count[hour <= 5] == 0).mean()),
        zero_share_day=float((count[(hour >= 7) & (hour <= 20)] == 0).mean()),
        weekday_profile=profile(workday),
        weekend_profile=profile(weekday >= 5),
        monthly_mean=pd.Series(count).groupby(local.dt.month.to_numpy()).mean(),
        day_type_mean={
            "workday": float(count[workday].mean()),
            "saturday": float(count[weekday == 5].mean()),
            "sunday": float(count[weekday == 6].mean()),
            "public holiday (Mon-Fri)": float(count[public & (weekday < 5)].mean()),
        },
    )


def without_lockdown(frame: pd.DataFrame) -> pd.DataFrame:
    local = frame["timestamp"].dt.tz_convert(PARIS_TZ)
    return frame.loc[(local < LOCKDOWN[0]) | (local >= LOCKDOWN[1])]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def stored_peak_hours(path: Path) -> str:
    """Weekday peak hours by UTC offset, as stored: equal across offsets when the file is right."""
    real = load_real(path, raw_timestamps=True)
    local = real["timestamp"].dt.tz_convert(PARIS_TZ)
    keep = local.dt.weekday < 5
    offset = local.dt.strftime("%z")
    lines = ["| stored offset | morning peak (local h) | evening peak (local h) |", "|---|---|---|"]
    for off in ("+0100", "+0200"):
        mask = keep & (offset == off)
        prof = real.loc[mask, "count"].groupby(local[mask].dt.hour).mean()
        lines.append(
            f"| {off} | {int(prof.loc[5:11].idxmax())} | {int(prof.loc[14:21].idxmax())} |"
        )
    return "\n".join(lines)


def markdown(
    summaries: list[Summary],
    reference: Summary,
    timings: dict[str, float],
    repaired: bool,
    evidence: str,
    stored: Summary | None,
) -> str:
    head = "| metric | " + " | ".join(s.label for s in summaries) + " |"
    sep = "|---|" + "---|" * len(summaries)
    rows = [
        ("rows", [f"{s.rows:,}" for s in summaries]),
        ("counters", [str(s.counters) for s in summaries]),
        ("mean", [f"{s.mean:.1f}" for s in summaries]),
        *[(f"p{int(q * 100)}", [f"{s.quantiles[q]:.0f}" for s in summaries]) for q in QUANTILES],
        ("max", [f"{s.max:,}" for s in summaries]),
        ("share of zeros", [f"{s.zero_share:.3f}" for s in summaries]),
        ("share of zeros 00-05h", [f"{s.zero_share_night:.3f}" for s in summaries]),
        ("share of zeros 07-20h", [f"{s.zero_share_day:.3f}" for s in summaries]),
        (
            "workday profile corr. vs real excl. lockdown",
            [f"{corr(s.weekday_profile, reference.weekday_profile):.4f}" for s in summaries],
        ),
        (
            "weekend profile corr. vs real excl. lockdown",
            [f"{corr(s.weekend_profile, reference.weekend_profile):.4f}" for s in summaries],
        ),
        *[
            (f"mean on {k}", [f"{s.day_type_mean[k]:.1f}" for s in summaries])
            for k in reference.day_type_mean
        ],
    ]
    if stored is not None:
        # what a comparison against the file as stored would say
        rows[-4:-4] = [
            (
                "workday profile corr. vs real as stored (no repair)",
                [f"{corr(s.weekday_profile, stored.weekday_profile):.4f}" for s in summaries],
            ),
            (
                "weekend profile corr. vs real as stored (no repair)",
                [f"{corr(s.weekend_profile, stored.weekend_profile):.4f}" for s in summaries],
            ),
        ]
    table = [head, sep, *(f"| {name} | " + " | ".join(vals) + " |" for name, vals in rows)]

    prof_head = (
        "| hour (Paris) | "
        + " | ".join(f"{s.label} {kind}" for kind in ("wd", "we") for s in summaries)
        + " |"
    )
    prof_rows = [prof_head, "|---|" + "---|" * (2 * len(summaries))]
    for h in range(24):
        vals = [f"{s.weekday_profile[h]:.2f}" for s in summaries]
        vals += [f"{s.weekend_profile[h]:.2f}" for s in summaries]
        prof_rows.append(f"| {h:02d} | " + " | ".join(vals) + " |")

    month_rows = [
        "| month | " + " | ".join(s.label for s in summaries) + " |",
        "|---|" + "---|" * len(summaries),
    ]
    for m in (9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8):
        vals = [f"{s.monthly_mean.get(m, float('nan')):.1f}" for s in summaries]
        month_rows.append(f"| {m:02d} | " + " | ".join(vals) + " |")

    cpu = cpu_model()
    timing = ", ".join(f"{k}: {v:.2f} s" for k, v in timings.items())
    note = (
        "Real timestamps repaired (stored instants were shifted by the Paris UTC offset, see "
        "below)."
        if repaired
        else "Real timestamps used as stored (no repair)."
    )
    return "\n".join(
        [
            "## Synthetic source calibration",
            "",
            f"Run {date.today().isoformat()} on `{platform.machine()}` / {cpu}, "
            f"Python {platform.python_version()}, numpy {np.__version__}, "
            f"pandas {pd.__version__}.",
            f"Command: `python bench/calibrate_synthetic.py --data <real parquet>`"
            f"{' --repair-timestamps' if repaired else ''}.",
            "",
            "Real data: Paris Open Data `comptage-velo-donnees-compteurs` (Ville de Paris, ODbL), "
            "52 counters, 2020-09-01 → 2021-08-09. Synthetic: `generate_counts(seed=42)` over the "
            "same period, no drift. The synthetic city has no COVID lockdown, so the reference "
            "for the profile correlations is the real data without 2020-10-30 → 2020-12-15; the "
            "'real (all)' column keeps the lockdown. " + note,
            "",
            f"Generation time for the whole period: {timing}.",
            "",
            *table,
            "",
            "Reading: the hourly shapes of the generator are rounded from the real "
            "profiles, so the ~0.999 profile correlations check the implementation (Paris local "
            "time, DST, day types, holidays, per-counter skew) rather than validate it "
            "independently. Levels, quantiles and zeros come from the counter scales, "
            "seasonality, weather, night overdispersion and outages and were tuned to the real "
            "values; the 80-counter city has more busy counters than the real 52, hence its "
            "higher p99/max. The real public-holiday mean is dragged down by the winter holidays "
            "of the period (Christmas, New Year).",
            "",
            "### Hourly profiles (mean count per Paris hour / mean of the 24 hourly means; "
            "wd = Mon-Fri except public holidays, we = Sat-Sun)",
            "",
            *prof_rows,
            "",
            "### Mean count per month",
            "",
            *month_rows,
            "",
            "### Are the real timestamps right?",
            "",
            "Weekday peak hours of the real file *as stored*, split by the UTC offset in force:",
            "",
            evidence,
            "",
            "Commuters follow the wall clock: in a correct file the peaks sit at the same Paris "
            "hours in winter (+01:00) and summer (+02:00). Peaks one hour apart between the two "
            "offsets are the signature of the old, shifted copy (use `--repair-timestamps`).",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="real counts parquet (read only)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repair-timestamps",
        action="store_true",
        help="repair the offset shift of the old (pre 2026-11-30) copy",
    )
    args = parser.parse_args(argv)

    real = load_real(args.data, raw_timestamps=not args.repair_timestamps)
    real_ref = summarise("real excl. lockdown", without_lockdown(real))
    summaries = [summarise("real (all)", real), real_ref]
    timings: dict[str, float] = {}
    for n in (52, 80):
        t0 = time.perf_counter()
        synth = generate_counts(PERIOD_START, PERIOD_END, seed=args.seed, n_counters=n)
        timings[f"{n} counters ({len(synth):,} rows)"] = time.perf_counter() - t0
        summaries.append(summarise(f"synthetic {n}", synth))

    stored = None
    if args.repair_timestamps:
        stored = summarise("real as stored", without_lockdown(load_real(args.data, True)))
    text = markdown(
        summaries, real_ref, timings, args.repair_timestamps, stored_peak_hours(args.data), stored
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
