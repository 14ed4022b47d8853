"""`retrain_job` in the demo (steps 2 and 4) and the evaluation it prints."""

from __future__ import annotations

from typing import Any

import dagster as dg

from bike_assets.demo.runner import run_job


def retrain(defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs: Any) -> None:
    """Run retrain_job and print its evaluation and what is served afterwards. A REJECT (the
    challenger does not beat the seasonal naive) or a SKIP is an outcome, not a failure."""
    run_job(defs, instance, "retrain_job", **kwargs)
    report = _print_evaluation(defs)
    pointer: Any = defs.load_asset_value("champion")
    if pointer:
        print(
            f"serving: v{pointer['version']} ({pointer.get('kind', 'model')}), "
            f"{report.get('serve', '?')} after this decision"
        )
    else:
        print("serving: nothing yet")


def _print_evaluation(defs: dg.Definitions) -> dict[str, Any]:
    from bike_assets.lifecycle.evaluate import scores_table

    report: Any = defs.load_asset_value("evaluation_report")
    print(scores_table(report))
    print(f"\ndecision: {report['decision']} - {report['reason']}")
    return report
