"""Forecast scores. Every score here is computed on hours the model never saw."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score


def score(y_true: Any, y_pred: Any) -> dict[str, float]:
    """R², RMSE, MAE and RMSE of log1p (errors on quiet hours count as much as on peaks)."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.clip(np.asarray(y_pred, dtype=np.float64), 0.0, None)
    if len(t) == 0:
        return {
            "r2": float("nan"),
            "rmse": float("nan"),
            "mae": float("nan"),
            "rmse_log1p": float("nan"),
            "rows": 0.0,
        }
    return {
        "r2": float(r2_score(t, p)) if len(t) > 1 else float("nan"),
        "rmse": float(np.sqrt(mean_squared_error(t, p))),
        "mae": float(mean_absolute_error(t, p)),
        "rmse_log1p": float(np.sqrt(mean_squared_error(np.log1p(t), np.log1p(p)))),
        "rows": float(len(t)),
    }


def mae_per_counter(counter_ids: Any, y_true: Any, y_pred: Any) -> dict[str, float]:
    err = pd.DataFrame(
        {
            "counter_id": np.asarray(counter_ids).astype(str),
            "abs_err": np.abs(np.asarray(y_true, float) - np.asarray(y_pred, float)),
        }
    )
    return {str(k): float(v) for k, v in err.groupby("counter_id")["abs_err"].mean().items()}
