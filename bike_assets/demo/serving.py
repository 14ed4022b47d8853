"""Step 5 of `bike demo`: the real HTTP server on 127.0.0.1, asked for a forecast, then stopped."""

from __future__ import annotations

import logging
import socket
import threading
import time

import requests

from bike_assets.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_and_forecast(settings: Settings, hours: int = 24) -> None:
    import uvicorn

    from bike_serving.app import create_app

    # the app's INFO lines (champion reloads) are for its operators; the demo prints what it serves
    logging.getLogger("bike_serving").setLevel(logging.WARNING)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = requests.get(f"{base}/health/ready", timeout=2)
                if ready.status_code in (200, 503):
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        if ready is None or ready.status_code != 200:
            print(f"GET {base}/health/ready -> not ready: no champion to serve yet")
            return
        champion = requests.get(f"{base}/champion", timeout=10).json()
        counters = requests.get(f"{base}/counters", timeout=10).json()
        counter_id = counters["counters"][0]
        forecast = requests.get(
            f"{base}/forecast", params={"counter_id": counter_id, "hours": hours}, timeout=30
        ).json()
        print(f"GET {base}/champion -> version {champion.get('version')}")
        print(f"GET {base}/forecast?counter_id={counter_id}&hours={hours}")
        for point in forecast["predictions"]:
            bar = "#" * round(point["predicted_count"] / 10)
            print(f"  {point['timestamp']}  {point['predicted_count']:7.1f}  {bar}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
