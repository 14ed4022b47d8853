"""`evaluate_champion_job` (what POST /admin/evaluate starts): scores on unseen hours only."""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from bike_assets.lifecycle.unseen import unseen_mask
from bike_assets.ml.pointer import read_pointer
from bike_assets_tests.conftest import Platform

FIRST, LAST = date(2024, 1, 8), date(2024, 2, 8)


def test_the_champion_is_scored_on_the_regression_window_and_the_new_week(
    platform: Platform,
) -> None:
    platform.ingest(FIRST, LAST)
    none_yet = platform.run("evaluate_champion_job", raise_on_error=False)
    assert not none_yet.success  # no champion: a clear failure, nothing invented

    platform.retrain()
    platform.ingest(LAST + timedelta(days=1), LAST + timedelta(days=7))
    result = platform.run("evaluate_champion_job")
    out = result.output_for_node("evaluate_champion")
    pointer = read_pointer(platform.settings.champion_pointer_uri)
    assert pointer is not None and out["version"] == pointer.version
    windows = {w["window"]: w for w in out["windows"]}
    assert set(windows) == {"latest_week", "test_baseline"}
    for w in windows.values():
        # every scored hour is outside what the served artifact trained on
        hours = pd.Series(pd.date_range(w["start"], w["end"], freq="h", inclusive="left"))
        inside = ~unseen_mask(hours, pointer.trained_range)
        assert w["rows"] > 0 and {"champion", "naive"} <= set(w)
        assert w["champion"]["rows"] == w["naive"]["rows"] == w["rows"]
        if w["window"] == "test_baseline":
            assert not inside.any()  # the regression window: never trained on
    # the week after the data the champion saw: the 7 new days, all unseen
    assert windows["latest_week"]["rows_left_out_in_sample"] == 0
