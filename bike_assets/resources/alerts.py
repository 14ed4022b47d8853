"""Discord alerts that never break a run, sent at most once per deduplication key.

`DiscordResource.send(title, message, level=..., dedup_key=...)` returns True only when Discord
accepted the message (2xx) during this call. It never raises: a monitoring alert that fails must
not fail the job that measured something (the failure is logged instead).

- No `webhook_url` (local development, CI): the alert is written to the log at INFO and nothing
  is sent; returns False.
- Payload: Discord's webhook shape, `{"username", "content", "embeds": [{"title",
  "description", "color"}], "allowed_mentions": {"parse": []}}`. The text is cut to Discord's
  limits (content 2,000, embed title 256, description 4,096 characters) rather than rejected,
  and `allowed_mentions` is empty so that a message quoting "@everyone" pings nobody.
- The webhook URL carries its secret token in the path: logs only ever show its host.
- Deduplication: a key is *claimed* before the POST and released again if the POST fails, so
  a failed alert is retried by the next call with the same key, and two processes racing on the
  same key send once. With `state_dir` set, claims live in a SQLite file
  (`<state_dir>/discord_sent.sqlite3`, one `INSERT OR IGNORE` per claim: SQLite's own locking
  makes it atomic across processes, which a JSON file would not be without a lock file). Without
  `state_dir` they live in memory, i.e. for the life of this resource object only (Dagster
  builds resources per run or per sensor tick, so that is dedup within one run). Keys never
  expire: put the period or the run in the key (`drift:2024-07-07`, `run-failure:<run_id>`).
  A message skipped as a duplicate returns False.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import requests
from pydantic import PrivateAttr

DEDUP_FILE = "discord_sent.sqlite3"
LEVEL_COLORS: dict[str, int] = {
    "info": 0x3498DB,  # blue
    "success": 0x2ECC71,  # green
    "warning": 0xF1C40F,  # yellow
    "error": 0xE74C3C,  # red
    "critical": 0x992D22,  # dark red
}
_UNKNOWN_LEVEL_COLOR = 0x95A5A6  # grey: an unknown level is shown, not refused
_CONTENT_MAX = 2000
_TITLE_MAX = 256
_DESCRIPTION_MAX = 4096


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or "?"
    except ValueError:
        return "?"


def discord_payload(title: str, message: str, *, level: str, username: str) -> dict[str, Any]:
    """The JSON body posted to the webhook."""
    return {
        "username": username,
        "content": _cut(f"[{level.upper()}] {title}", _CONTENT_MAX),
        "embeds": [
            {
                "title": _cut(title, _TITLE_MAX),
                "description": _cut(message, _DESCRIPTION_MAX),
                "color": LEVEL_COLORS.get(level.lower(), _UNKNOWN_LEVEL_COLOR),
            }
        ],
        "allowed_mentions": {"parse": []},
    }


class DiscordResource(dg.ConfigurableResource):
    """Posts alerts to a Discord webhook; see the module docstring for the guarantees."""

    webhook_url: str = ""
    timeout_s: float = 5.0
    username: str = "bike-traffic"
    state_dir: str = ""

    _sent: set[str] = PrivateAttr(default_factory=set)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    # -- public ---------------------------------------------------------------------------------
    def send(
        self, title: str, message: str, *, level: str = "info", dedup_key: str | None = None
    ) -> bool:
        log = dg.get_dagster_logger(__name__)
        if not self.webhook_url.strip():
            log.info("alert (Discord not configured) [%s] %s: %s", level, title, message)
            return False
        if dedup_key is not None and not self._claim(dedup_key):
            log.info("alert %r already sent, skipped: %s", dedup_key, title)
            return False
        delivered = self._post(discord_payload(title, message, level=level, username=self.username))
        if not delivered and dedup_key is not None:
            self._release(dedup_key)  # not delivered: the next call may try again
        return delivered

    def already_sent(self, dedup_key: str) -> bool:
        """Whether a message with this key was delivered (or is being delivered)."""
        db = self._db_path()
        if db is None:
            with self._lock:
                return dedup_key in self._sent
        try:
            with closing(self._connect(db)) as conn:
                row = conn.execute("SELECT 1 FROM sent WHERE key = ?", (dedup_key,)).fetchone()
                return row is not None
        except (sqlite3.Error, OSError):
            with self._lock:
                return dedup_key in self._sent

    # -- HTTP -----------------------------------------------------------------------------------
    def _post(self, payload: dict[str, Any]) -> bool:
        log = dg.get_dagster_logger(__name__)
        host = _host(self.webhook_url)
        try:
            response = requests.post(self.webhook_url, json=payload, timeout=self.timeout_s)
        except Exception as exc:  # connection refused, DNS, timeout, bad URL: all "not sent"
            log.warning("Discord alert not sent (%s unreachable): %s", host, type(exc).__name__)
            return False
        if 200 <= response.status_code < 300:
            return True
        # 429 (rate limit) included: no sleeping and retrying inside a run; the alert is logged.
        log.warning(
            "Discord alert not sent: %s answered HTTP %s %s",
            host,
            response.status_code,
            response.text[:200],
        )
        return False

    # -- deduplication --------------------------------------------------------------------------
    def _db_path(self) -> Path | None:
        return Path(self.state_dir) / DEDUP_FILE if self.state_dir.strip() else None

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db, timeout=10.0, isolation_level=None)  # autocommit
        conn.execute("CREATE TABLE IF NOT EXISTS sent (key TEXT PRIMARY KEY, sent_at TEXT)")
        return conn

    def _claim(self, key: str) -> bool:
        """True when this call owns the key (nobody sent it before)."""
        db = self._db_path()
        if db is not None:
            try:
                with closing(self._connect(db)) as conn:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO sent (key, sent_at) VALUES (?, ?)",
                        (key, datetime.now(UTC).isoformat()),
                    )
                    return cursor.rowcount == 1
            except (sqlite3.Error, OSError) as exc:
                # Unusable state file (read-only disk...): degrade to in-memory dedup, say so.
                dg.get_dagster_logger(__name__).warning(
                    "alert dedup file %s unusable (%s), deduplicating in memory", db, exc
                )
        with self._lock:
            if key in self._sent:
                return False
            self._sent.add(key)
            return True

    def _release(self, key: str) -> None:
        db = self._db_path()
        if db is not None:
            try:
                with closing(self._connect(db)) as conn:
                    conn.execute("DELETE FROM sent WHERE key = ?", (key,))
            except (sqlite3.Error, OSError):
                pass  # the claim stays: at worst one alert is not retried
        with self._lock:
            self._sent.discard(key)
