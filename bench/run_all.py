"""Rerun every benchmark and rewrite BENCHMARKS.md: one command for all the evidence.

    .venv/bin/python bench/run_all.py --data PATH      # PATH: the shared counts_*.parquet
    .venv/bin/python bench/run_all.py --quick --out /tmp/BENCHMARKS.quick.md  # synthetic, minutes
    .venv/bin/python bench/run_all.py --data PATH --only model                # one section

Each bench is run through its own `main(argv)`, in a child process of its own (they set
environment variables and import-time settings of the platform, which must not leak from one to
the next), with its report written to the results directory (`bench/results/` for
BENCHMARKS.md, else beside `--out`). BENCHMARKS.md then gets:

- a summary table: every headline figure beside its reference measured in the same run (the
  bare API client, scipy, the trivial Litestar handler, the naive and original models), the
  ratio, the target and whether it is met, with the date and load of that bench's run;
- one section per bench between `<!-- bench:NAME:begin -->` / `<!-- bench:NAME:end -->` markers,
  holding the command, date, machine, load and the bench's report as it wrote it.

`--only NAME ...` reruns some benches and replaces only their sections (the others, and their
summary rows, stay as they were): that is how the model tables are regenerated alone. Figures
come from the `<report>.figures.json` a bench writes (`bench/_figures.py`); for a bench that does
not write one (serve), they are read from the report's Markdown table.

Data: `--data` is the shared Paris parquet (API field names); without it, a synthetic city of the
same shape and period is generated (`bike_assets.sources.synthetic.generate_counts`) into a
temporary parquet, so the command runs on a fresh clone. `--quick` shortens every bench (fewer
days, repeats, seconds and counters) to a few minutes in all; its figures are not comparable to
a full run and targets that need the whole period are marked n/a.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))  # the bench modules and their helpers (_machine, _figures)

from _figures import Figure, read_figures  # noqa: E402
from _machine import cpu_model, uname_m  # noqa: E402

PERIOD = ("2020-09-01", "2021-08-10")  # the shared file's Paris days, end exclusive
SECTION = re.compile(
    r"<!-- bench:(?P<name>[\w-]+):begin -->\n.*?<!-- bench:(?P=name):end -->\n", re.DOTALL
)
FIGURES = re.compile(r"<!-- figures: (?P<json>.*?) -->", re.DOTALL)


@dataclass(frozen=True)
class Plan:
    data: Path
    synthetic: bool
    quick: bool
    results: Path


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    title: str
    report_name: str
    argv: Callable[[Plan, Path], list[str]]
    needs_real_data: bool = False
    extract: Callable[[str], list[Figure]] | None = None  # figures from the report, if no json


@dataclass
class Outcome:
    bench: Bench
    command: str
    started: str
    seconds: float
    exit_code: int
    load_before: str
    load_after: str
    report: str
    figures: list[Figure] = field(default_factory=list)
    skipped: str = ""


# --- figures read from reports that have no figures file ------------------------------------
def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of `text` as rows keyed by header."""
    tables, lines = [], text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=False)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def number(text: str) -> float | None:
    match = re.search(r"-?[\d,]*\.?\d+", text or "")
    return float(match.group().replace(",", "")) if match else None


def serve_figures(text: str) -> list[Figure]:
    """`bench/serve.py`'s scenario table: each /predict scenario beside (a), the trivial handler.

    Targets (issue #13) by what a row measures, not by its letter (the scenarios get renumbered):
    one record inside the forecast cache >= 2,000 req/s; one record for any other hour >= 1,000
    req/s with p99 <= 20 ms.
    """
    for table in markdown_tables(text):
        rows = [r for r in table if "req/s" in r and r.get("scenario")]
        trivial = next((number(r["req/s"]) for r in rows if "trivial" in r["scenario"]), None)
        if trivial is None:
            continue
        out = []
        for row in rows:
            label, rps = row["scenario"], number(row["req/s"])
            if "trivial" in label or rps is None:
                continue
            p99 = number(row.get("p99 ms", ""))
            target, met = "", None
            if "1 record" in label and "cache" in label:
                target, met = ">= 2,000 req/s", rps >= 2000
            elif "1 record" in label:
                target = ">= 1,000 req/s, p99 <= 20 ms"
                met = rps >= 1000 and p99 is not None and p99 <= 20
            out.append(
                Figure(
                    what=label,
                    value=rps,
                    unit="req/s",
                    reference="trivial Litestar handler, same server settings",
                    reference_value=trivial,
                    target=target,
                    met=met,
                    note=f"p99 {row.get('p99 ms', '?')} ms",
                )
            )
        return out
    return []


def model_figures(text: str) -> list[Figure]:
    """`bench/model_quality.py`'s model table: each model's R² beside the seasonal naive's."""
    for table in markdown_tables(text):
        if not table or "model" not in table[0] or "R²" not in table[0]:
            continue
        scores = {r["model"]: number(r["R²"]) for r in table}
        naive = next((v for k, v in scores.items() if "naive" in k.lower()), None)
        out = []
        for model, r2 in scores.items():
            if r2 is None or "naive" in model.lower():
                continue
            ours = model.lower().startswith("ours")
            out.append(
                Figure(
                    what=f"R² on the test month: {model}",
                    value=r2,
                    unit="R²",
                    reference="seasonal naive, same rows",
                    reference_value=naive,
                    target="beat the naive by >= 0.08 R²" if ours else "",
                    met=(naive is not None and r2 - naive >= 0.08) if ours else None,
                )
            )
        return out
    return []


# --- the benches -----------------------------------------------------------------------------
def _supports(module: str, flag: str) -> bool:
    """Whether a bench's argument parser knows `flag` (benches change; don't pass stale flags)."""
    return f'"{flag}"' in (BENCH_DIR / f"{module}.py").read_text(encoding="utf-8")


def _ingest_argv(plan: Plan, out: Path) -> list[str]:
    argv = ["--data", str(plan.data), "--out", str(out)]
    if plan.quick:  # two weeks, both fault scenarios, the local default instance only
        argv += ["--days", "14", "--instance", "sqlite", "--retry-after", "1"]
    return argv


def _model_argv(plan: Plan, out: Path) -> list[str]:
    argv = ["--data", str(plan.data), "--out", str(out)]
    if plan.quick and _supports("model_quality", "--quick"):
        argv.append("--quick")
    return argv


def _retrain_argv(plan: Plan, out: Path) -> list[str]:
    argv = ["--data", str(plan.data), "--out", str(out)]
    return argv + (["--repeats", "0"] if plan.quick else [])


BENCHES = [
    Bench(
        "ingest",
        "ingest",
        "Ingestion: the whole period through `raw_counts`",
        "ingest.md",
        _ingest_argv,
    ),
    Bench(
        "drift",
        "drift",
        "Drift report",
        "drift.md",
        lambda plan, out: (
            ["--data", str(plan.data), "--output", str(out)]
            + (["--repeats", "1"] if plan.quick else [])
        ),
    ),
    Bench(
        "serve",
        "serve",
        "Serving",
        "serve.md",
        lambda plan, out: ["--output", str(out)] + (["--duration", "2"] if plan.quick else []),
        extract=serve_figures,
    ),
    Bench(
        "model",
        "model_quality",
        "Model quality",
        "model_quality.md",
        _model_argv,
        extract=model_figures,
    ),
    Bench(
        "retrain",
        "retrain_job",
        "Retraining: `retrain_job` on the whole year through Dagster",
        "retrain_job.md",
        _retrain_argv,
    ),
    Bench(
        "calibration",
        "calibrate_synthetic",
        "Synthetic source calibration",
        "synthetic_calibration.md",
        lambda plan, out: ["--data", str(plan.data), "--out", str(out)],
        needs_real_data=True,
    ),
]

_CHILD = """
import importlib, inspect, json, sys
bench_dir, module, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, bench_dir)
mod = importlib.import_module(module)
sys.argv = [mod.__file__, *argv]  # for a main() that parses sys.argv itself
code = mod.main(argv) if inspect.signature(mod.main).parameters else mod.main()
raise SystemExit(code or 0)
"""


def load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine() -> str:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return (
        f"{uname_m()}, {cpu_model()}, {os.cpu_count()} logical CPUs, {mem}, "
        f"Python {platform.python_version()}"
    )


def reuse_bench(bench: Bench, plan: Plan) -> Outcome:
    """The report a bench already wrote to the results directory, not run again (`--reuse`:
    e.g. the model tables of a long run made earlier the same day; the report carries its own
    date, machine and load)."""
    out = plan.results / bench.report_name
    if not out.exists():
        raise SystemExit(f"--reuse {bench.name}: {out} does not exist; run the bench first")
    report = out.read_text(encoding="utf-8")
    figures = read_figures(out) or (bench.extract(report) if bench.extract else [])
    written = datetime.fromtimestamp(out.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python bench/{bench.module}.py (report reused, written {written})"
    return Outcome(bench, command, written, 0.0, 0, "see report", "see report", report, figures)


def run_bench(bench: Bench, plan: Plan, timeout_s: float) -> Outcome:
    out = plan.results / bench.report_name
    argv = bench.argv(plan, out)
    command = f"python bench/{bench.module}.py " + " ".join(argv)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if bench.needs_real_data and plan.synthetic:
        return Outcome(
            bench,
            command,
            started,
            0.0,
            0,
            load(),
            load(),
            "",
            [],
            skipped="needs the real data (--data): it compares the synthetic city with it",
        )
    # The platform's settings come from the environment: a developer's exports must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BIKE_", "DAGSTER_HOME"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    before, t0 = load(), time.perf_counter()
    print(f"== {bench.name}: {command}", flush=True)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(BENCH_DIR), bench.module, json.dumps(argv)],
            cwd=ROOT,
            env=env,
            timeout=timeout_s,
            check=False,
        )
        code = done.returncode
    except subprocess.TimeoutExpired:
        code = -1
    seconds = time.perf_counter() - t0
    report = out.read_text(encoding="utf-8") if out.exists() and code != -1 else ""
    figures = read_figures(out) if report else []
    if report and not figures and bench.extract is not None:
        figures = bench.extract(report)
    print(f"== {bench.name}: exit {code} in {seconds:.0f} s, {len(figures)} figure(s)", flush=True)
    return Outcome(bench, command, started, seconds, code, before, load(), report, figures)


# --- BENCHMARKS.md ---------------------------------------------------------------------------
def demote(markdown: str, levels: int = 2) -> str:
    """The bench report's headings pushed under the section's own heading."""
    return re.sub(
        r"^(#+) ",
        lambda m: "#" * min(6, len(m.group(1)) + levels) + " ",
        markdown,
        flags=re.MULTILINE,
    )


def section(o: Outcome, plan: Plan, out_path: Path) -> str:
    link = os.path.relpath(plan.results / o.bench.report_name, out_path.parent)
    figures = json.dumps([asdict(f) for f in o.figures], ensure_ascii=False)
    meta = json.dumps({"started": o.started, "load": o.load_before, "quick": plan.quick})
    head = [
        f"<!-- bench:{o.bench.name}:begin -->",
        f"## {o.bench.title} (`bench/{o.bench.module}.py`)",
        "",
    ]
    if o.skipped:
        body = [f"Not run in this pass: {o.skipped}.", ""]
    else:
        status = (
            "ok"
            if o.exit_code == 0
            else ("TIMED OUT" if o.exit_code == -1 else f"FAILED (exit {o.exit_code})")
        )
        data = "synthetic city (no --data)" if plan.synthetic else f"`{plan.data.name}`"
        body = [
            f"- run: {o.started}, {o.seconds:.0f} s, {status}; "
            f"{'QUICK (--quick), not comparable to a full run' if plan.quick else 'full run'}",
            f"- command: `{o.command.replace(str(plan.data), '<data>')}`",
            f"- data: {data}; machine: {machine()}",
            f"- load average (1/5/15 min) before {o.load_before}, after {o.load_after} "
            "(2 cores shared with other work: above 2 means waiting)",
            f"- full report: [{link}]({link})",
            "",
            demote(o.report.strip()) if o.report else "_The bench wrote no report._",
            "",
        ]
    return "\n".join(
        [
            *head,
            *body,
            f"<!-- figures: {figures} -->",
            f"<!-- run: {meta} -->",
            f"<!-- bench:{o.bench.name}:end -->",
            "",
        ]
    )


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def summary(sections: dict[str, str]) -> str:
    lines = [
        "| bench | figure | value | reference (same run) | reference value | ratio | target "
        "| status | run | load |",
        "|---|---|---:|---|---:|---:|---|---|---|---|",
    ]
    for name, text in sections.items():
        found = FIGURES.search(text)
        run = re.search(r"<!-- run: (.*?) -->", text)
        meta = json.loads(run.group(1)) if run else {}
        when = meta.get("started", "?") + (" (quick)" if meta.get("quick") else "")
        for entry in json.loads(found.group("json")) if found else []:
            f = Figure(**entry)
            ratio = f"{f.ratio:.2f}" if f.ratio is not None else ""
            ref = "" if f.reference_value is None else _num(f.reference_value)
            status = {True: "met", False: "NOT met", None: "n/a"}[f.met]
            note = f" ({f.note})" if f.note else ""
            lines.append(
                f"| {name} | {f.what}{note} | {_num(f.value)} {f.unit} | {f.reference} | {ref} "
                f"| {ratio} | {f.target} | {status} | {when} | {meta.get('load', '')} |"
            )
    return "\n".join(lines)


def write_benchmarks(out_path: Path, fresh: dict[str, str], plan: Plan) -> None:
    old = out_path.read_text(encoding="utf-8") if out_path.exists() else ""
    kept = {m["name"]: m.group(0) for m in SECTION.finditer(old)}
    missing = [b.name for b in BENCHES if b.name not in fresh and b.name not in kept]
    if old and missing:
        # e.g. `--only model` on a hand-written file: nothing of it can be kept section-wise
        print(
            f"warning: {out_path.name} had no section for {', '.join(missing)}; they are left "
            "out (run them, or the whole command, to fill them)",
            file=sys.stderr,
        )
    order = [b.name for b in BENCHES]
    sections = {n: fresh.get(n) or kept[n] for n in order if n in fresh or n in kept}
    text = "\n".join(
        [
            "# Benchmarks",
            "",
            "<!-- Generated by bench/run_all.py: do not edit by hand. Rerun a part with "
            "`bench/run_all.py --data <parquet> --only <name>`; the other sections are kept. -->",
            "",
            "Every figure below was produced by `bench/run_all.py`, each bench in its own "
            "process, beside a reference measured in the same run. Speed is measured here, never "
            "asserted in tests. Real data: Paris Open Data `comptage-velo-donnees-compteurs` "
            "(Ville de Paris, ODbL), the copy corrected on 2026-11-30, read from a path given on "
            "the command line and never copied into the repository.",
            "",
            "## Summary against the issues' targets",
            "",
            summary(sections),
            "",
            *sections.values(),
        ]
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text, encoding="utf-8")


def synthetic_parquet(path: Path, quick: bool) -> Path:
    """A synthetic city in the shared file's shape (API field names, UTC `date`) and period."""
    import pandas as pd

    from bike_assets.settings import PARIS_TZ
    from bike_assets.sources.synthetic import generate_counts

    start, end = (pd.Timestamp(d, tz=PARIS_TZ).to_pydatetime() for d in PERIOD)
    tidy = generate_counts(start, end, seed=42, n_counters=12 if quick else 52)
    ts = tidy["timestamp"].dt.tz_convert("UTC")
    pd.DataFrame(
        {
            "id_compteur": tidy["counter_id"],
            "nom_compteur": tidy["counter_name"],
            "id": tidy["site_id"],
            "name": tidy["site_name"],
            "sum_counts": tidy["count"],
            "date": ts,
            "installation_date": tidy["installation_date"],
            "counter": "synthetic",
            "lat": tidy["lat"],
            "lon": tidy["lon"],
            "mois_annee_comptage": ts.dt.tz_convert(PARIS_TZ).dt.strftime("%Y-%m"),
        }
    ).to_parquet(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, help="the Paris counts parquet; default: synthetic")
    parser.add_argument("--quick", action="store_true", help="a few minutes, not comparable")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the Markdown file to (re)write"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="where each bench writes its report (default: bench/results for "
        "the repository's BENCHMARKS.md, else <out stem>_results beside "
        "--out)",
    )
    names = [b.name for b in BENCHES]
    parser.add_argument("--only", nargs="+", choices=names, default=names)
    parser.add_argument("--skip", nargs="+", choices=names, default=[])
    parser.add_argument(
        "--reuse",
        nargs="+",
        choices=names,
        default=[],
        help="take these benches' reports from the results directory instead of running them",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per bench (default 900 quick, 5400 full)",
    )
    args = parser.parse_args(argv)

    out_path = args.out.resolve()
    results = args.results or (
        BENCH_DIR / "results"
        if out_path == (ROOT / "BENCHMARKS.md").resolve()
        else out_path.with_name(out_path.stem + "_results")
    )
    results.mkdir(parents=True, exist_ok=True)
    timeout_s = args.timeout or (900.0 if args.quick else 5400.0)
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as scratch:
        data = args.data.resolve() if args.data else None
        if data is None:
            data = synthetic_parquet(Path(scratch) / "synthetic_counts.parquet", args.quick)
        plan = Plan(data=data, synthetic=args.data is None, quick=args.quick, results=results)
        outcomes = [
            reuse_bench(b, plan) if b.name in args.reuse else run_bench(b, plan, timeout_s)
            for b in BENCHES
            if b.name in args.only and b.name not in args.skip
        ]
        write_benchmarks(
            out_path, {o.bench.name: section(o, plan, out_path) for o in outcomes}, plan
        )
    print(f"written to {out_path} (reports in {results})")
    failed = [o.bench.name for o in outcomes if o.exit_code != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
