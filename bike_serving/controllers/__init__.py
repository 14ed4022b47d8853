"""One controller per resource."""

from bike_serving.controllers.admin import AdminController
from bike_serving.controllers.forecast import ForecastController
from bike_serving.controllers.health import HealthController
from bike_serving.controllers.metrics import MetricsController
from bike_serving.controllers.model import ModelController
from bike_serving.controllers.predict import PredictController
from bike_serving.controllers.reports import ReportsController
from bike_serving.controllers.runs import RunsController

CONTROLLERS = [
    PredictController,
    ForecastController,
    ModelController,
    HealthController,
    AdminController,
    RunsController,
    MetricsController,
    ReportsController,
]

__all__ = ["CONTROLLERS"]
