"""The HTTP serving app: the champion model behind a Litestar API.

`bike_serving.app:app` is the ASGI application (`uvicorn bike_serving.app:app`, one worker per
container). It reads the same settings as the Dagster code location
(`bike_assets.settings.Settings.from_env()`), follows the champion pointer written by the retrain
job, and answers from a precomputed forecast of the champion's own pipeline whenever it can.

Endpoints: POST /predict, GET /forecast, GET /counters, GET /champion, GET /health/live,
GET /health/ready, GET /metrics, POST /admin/reload (X-API-Key), the raw OpenAPI document at
/schema and /schema/openapi.json (no HTML viewer: those load scripts from a CDN), and the admin
controls that start Dagster runs through its webserver (POST /admin/retrain, /admin/monitor,
/admin/promote, /admin/evaluate, GET /admin/runs/{run_id}; X-API-Key, DAGSTER_GRAPHQL_URL:
`controllers.runs`, `dagster_runs`).

Decisions worth knowing (details in the modules):
- Timestamps: ISO 8601, naive = Europe/Paris; an instant inside an hour gets that hour's count
  (the model's features are hourly, so this is also the pipeline's own answer) and is echoed as
  sent, with its offset (`timestamps`).
- Errors are `{"status_code", "detail", "field"?}`: 400 body is not JSON (or nested deeper than
  the decoder allows), 415 a body not sent as application/json, 422 a field is wrong
  (type, missing, empty `records`, bad timestamp, unknown counter, out-of-range parameter),
  413 more than BIKE_MAX_RECORDS records, 503 no champion loaded (the detail says how to train
  one), 404/405 routing; an unexpected exception is a bare JSON 500, logged (`errors`). No answer
  names a server path: the model is shown relative to the model store.
- Model files: the pointer names them relative to the model store with their sha256; the file
  is loaded only from inside the store and only if its digest matches
  (`bike_assets.ml.model_files`).
- Admin endpoints: 401 without the right X-API-Key; 403 "disabled" when BIKE_API_KEY is unset
  (`auth`). POST /admin/reload answers 200 with `result` loaded/unchanged/refreshed/failed/absent.
- Hot reload: pointer re-read every BIKE_RELOAD_INTERVAL s (and on /admin/reload); a new
  artifact is loaded in a thread and swapped by one reference assignment; a broken pointer or
  artifact keeps the old model and counts `bike_model_reloads_total{result="failed"}`; the
  forecast window moves with the Paris day at the next check (`model_holder`).
- Forecast cache: every known counter x every hour of BIKE_FORECAST_CACHE_DAYS Paris days from
  today's midnight, computed with one `predict` call of the loaded pipeline (`forecast_cache`);
  any other hour is computed with its whole day, for each counter asked, by one call on first
  use and kept in a bounded LRU (`day_cache`); requests spread over many days for few rows go
  through the pipeline row by row in a worker thread (`prediction`).
- Metrics: one Prometheus registry per app, the Litestar plugin's HTTP metrics (group_path=True)
  plus bike_predictions_total{source=cache|day_cache|pipeline}, bike_model_info{version},
  bike_model_reloads_total{result}, bike_model_age_seconds (`metrics`).
"""
