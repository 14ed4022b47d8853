"""`retrain_job` in the demo (steps 2 and 4) and the evaluation it prints."""

from __future__ import annotations

from typing import Any

import dagster as dg

from bike_assets.demo.runner import asset_value, run_job


def retrain(defs: dg.Definitions, instance: dg.DagsterInstance, **kwargs: Any) -> None:
    """Run retrain_job and print its evaluation and what is served afterwards. A REJECT (the
    challenger does not beat the seasonal naive) or a SKIP is an outcome, not a failure."""
    result = run_job(defs, instance, "retrain_job", **kwargs)
    report = _print_evaluation(asset_value(defs, instance, result, "evaluation_report"))
    pointer: Any = asset_value(defs, instance, result, "champion")
    if pointer:
        print(
            f"serving: v{pointer['version']} ({pointer.get('kind', 'model')}), "
            f"{report.get('serve', '?')} after this decision"
        )
    else:
        print("serving: nothing yet")


def _print_evaluation(report: dict[str, Any]) -> dict[str, Any]:
    from bike_assets.lifecycle.evaluate import scores_table

    print(scores_table(report))
    print(f"\ndecision: {report['decision']} - {report['reason']}")
    return report
