"""The platform's calendar: Paris-local daily partitions from the settings' start date.

Asset modules declare their partitions with `DEFAULT` (the default start date) so they can be
decorated at import without reading the environment; `build_definitions(settings)` swaps in
`calendar(settings.partitions_start)` with `with_calendar`, so `BIKE_PARTITIONS_START` is read
once, with every other setting, and two `build_definitions` calls with different settings get
different calendars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from bike_assets.settings import DEFAULT_PARTITIONS_START, PARIS_TZ


@dataclass(frozen=True)
class Calendar:
    # Paris-local days: a partition is what Parisians call "a day", 23 or 25 hours at DST
    # changes. A day exists once it is over (`end_offset=0`): raw_counts of day D arrive after D.
    counts: dg.DailyPartitionsDefinition
    # The Paris day a forecast is issued on. Today is a partition as soon as it starts
    # (`end_offset=1`): the forecast issued on day D is made during D, from the counts of D-1 and
    # before, so the first issue day is the day after the first day of counts.
    issues: dg.DailyPartitionsDefinition

    def with_start_of(
        self, other: Calendar
    ) -> dict[dg.PartitionsDefinition, dg.PartitionsDefinition]:
        return {self.counts: other.counts, self.issues: other.issues}


def calendar(start: date) -> Calendar:
    return Calendar(
        counts=dg.DailyPartitionsDefinition(
            start_date=start.isoformat(), timezone=PARIS_TZ, fmt="%Y-%m-%d"
        ),
        issues=dg.DailyPartitionsDefinition(
            start_date=(start + timedelta(days=1)).isoformat(),
            timezone=PARIS_TZ,
            fmt="%Y-%m-%d",
            end_offset=1,
        ),
    )


DEFAULT = calendar(DEFAULT_PARTITIONS_START)


def with_calendar(
    assets: Sequence[dg.AssetsDefinition], cal: Calendar
) -> list[dg.AssetsDefinition]:
    """`assets` with the partitions they declared from `DEFAULT` replaced by `cal`'s."""
    swap = DEFAULT.with_start_of(cal)

    def repartitioned(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.partitions_def is None or spec.partitions_def not in swap:
            return spec
        return spec.replace_attributes(partitions_def=swap[spec.partitions_def])

    return [asset.map_asset_specs(repartitioned) for asset in assets]
