"""The HTTP serving app: the champion model behind a Litestar API.

`bike_serving.app:app` is the ASGI application (`uvicorn bike_serving.app:app`). It reads the same
settings as the Dagster code location (`bike_assets.settings.Settings.from_env()`), follows the
champion pointer written by the retrain job, and answers from a precomputed forecast of the
champion's own pipeline whenever it can.
"""
