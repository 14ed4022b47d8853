"""The figures a benchmark hands to `bench/run_all.py`, beside the Markdown report it writes.

A bench writes `<report>.figures.json` (`write_figures`): one entry per headline figure, each with
the reference it is compared to *measured in the same run* and, when the issue sets one, the
target. `run_all.py` reads them back (`read_figures`) into the summary table of BENCHMARKS.md, so
the summary never copies a number by hand. A bench without the file still gets its section (its
report is included as written), only not a summary row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    what: str
    value: float
    unit: str
    reference: str = ""  # what the value is compared to, run in the same process/run
    reference_value: float | None = None
    target: str = ""  # e.g. "<= 60 s"; empty when the issue sets none
    met: bool | None = None  # None: no target, or not applicable to this run (e.g. --quick)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference_value in (None, 0):
            return None
        return self.value / self.reference_value  # type: ignore[operator]


def figures_path(report: Path) -> Path:
    return report.with_name(report.name + ".figures.json")


def write_figures(report: Path, figures: list[Figure]) -> Path:
    path = figures_path(report)
    path.write_text(json.dumps([asdict(f) for f in figures], indent=1), encoding="utf-8")
    return path


def read_figures(report: Path) -> list[Figure]:
    path = figures_path(report)
    if not path.exists():
        return []
    return [Figure(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]
