"""The champion currently served, and its hot reload.

The pointer is re-read every `BIKE_RELOAD_INTERVAL` seconds (and on POST /admin/reload). When it
names another artifact, the new model is loaded and its forecast cache built in a worker thread,
beside the old one, then swapped in by one attribute assignment: requests already running keep
the `LoadedChampion` they took. A missing or corrupt pointer, or an artifact that does not load,
keeps the old model and counts `bike_model_reloads_total{result="failed"}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import anyio.to_thread

from bike_assets.ml.model_files import ArtifactError
from bike_assets.ml.pointer import ChampionPointer, PointerError, read_pointer
from bike_assets.settings import Settings
from bike_serving.champion import LoadedChampion, load_champion
from bike_serving.errors import NoChampionError
from bike_serving.metrics import ServingMetrics
from bike_serving.timestamps import paris_day

logger = logging.getLogger("bike_serving")

ReloadResult = Literal["loaded", "unchanged", "refreshed", "failed", "absent"]


@dataclass(frozen=True)
class ReloadOutcome:
    """What a pointer check did: `loaded` a new champion, found it `unchanged`, `refreshed` the
    forecast window of the same model (new Paris day), `failed` (old model kept), or found no
    champion at all (`absent`: nothing was ever promoted, which is not a failure)."""

    result: ReloadResult
    detail: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChampionHolder:
    def __init__(
        self,
        settings: Settings,
        metrics: ServingMetrics,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._current: LoadedChampion | None = None
        self._lock = asyncio.Lock()
        metrics.watch(lambda: self._current)

    @property
    def current(self) -> LoadedChampion | None:
        return self._current

    def require(self) -> LoadedChampion:
        """The champion for one request (503 with the way to create one when there is none)."""
        champion = self._current
        if champion is None:
            raise NoChampionError()
        return champion

    def reset_lock(self) -> None:
        """A fresh lock for the event loop that is starting (an app may be started twice)."""
        self._lock = asyncio.Lock()

    async def reload(self) -> ReloadOutcome:
        # One pointer check at a time: the periodic task and /admin/reload must not load the
        # same artifact twice or swap in an older one after a newer one.
        async with self._lock:
            outcome = await self._check_pointer()
        log = logger.warning if outcome.result == "failed" else logger.info
        if outcome.result != "unchanged":
            log("champion reload: %s: %s", outcome.result, outcome.detail)
        return outcome

    async def run_periodic(self) -> None:
        """The background task started by the lifespan; it must survive any error."""
        interval = self.settings.reload_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload()
            except Exception:
                logger.exception("champion pointer check crashed; trying again in %ss", interval)

    async def _check_pointer(self) -> ReloadOutcome:
        uri = self.settings.champion_pointer_uri
        current = self._current
        try:
            pointer = await anyio.to_thread.run_sync(read_pointer, uri)
        except PointerError as exc:
            return self._failed(f"champion pointer is unusable: {self._unlocated(exc)}")
        except Exception as exc:  # e.g. a storage client error on GCS
            logger.exception("cannot read champion pointer %s", uri)
            return self._failed(f"cannot read the champion pointer: {type(exc).__name__}")
        if pointer is None:
            if current is None:
                return ReloadOutcome("absent", NoChampionError().detail)
            return self._failed("the champion pointer has disappeared")

        now = self.clock()
        days = self.settings.forecast_cache_days
        if current is not None and current.key == (pointer.version, pointer.model_uri):
            return await self._refresh(current, pointer, now)
        root = self.settings.model_store_root
        try:
            loaded = await anyio.to_thread.run_sync(load_champion, pointer, root, days, now)
        except Exception as exc:  # deserializing an artifact can raise anything
            # a refused file (digest, location) is a known condition: no traceback for it
            log = logger.warning if isinstance(exc, ArtifactError) else logger.exception
            log("cannot load model %s from %s: %s", pointer.version, pointer.model_uri, exc)
            return self._failed(
                f"cannot load model version {pointer.version}: {self._unlocated(exc)}"
            )
        previous = current.pointer.version if current else None
        self._swap(loaded)
        self.metrics.reloads.labels(result="success").inc()
        return ReloadOutcome(
            "loaded", f"serving version {pointer.version} (previously {previous or 'none'})"
        )

    def _unlocated(self, exc: Exception) -> str:
        """The error without the server's paths (the log has them): the outcome is shown over
        HTTP. Store-relative model paths stay, they say which file without saying where."""
        text = f"{type(exc).__name__}: {exc}"
        for location in (self.settings.champion_pointer_uri, self.settings.model_store_root):
            text = text.replace(location, "<store>")
        return text

    async def _refresh(
        self, current: LoadedChampion, pointer: ChampionPointer, now: datetime
    ) -> ReloadOutcome:
        """Same artifact: take the pointer's new metadata and move the forecast window to the
        current Paris day when it rolled over. Until then the old window still answers every hour
        it covers, so a late refresh costs speed for a while, never correctness."""
        updated = (
            current
            if pointer == current.pointer
            else current.with_pointer(pointer, self.settings.model_store_root)
        )
        result: ReloadResult = "unchanged"
        if current.cache.day != paris_day(now):
            try:
                updated = await anyio.to_thread.run_sync(
                    updated.with_cache_for, now, self.settings.forecast_cache_days
                )
                result = "refreshed"
            except Exception:
                logger.exception("cannot rebuild the forecast cache; keeping the old window")
        if updated is not current:
            self._swap(updated)
        return ReloadOutcome(result, f"serving version {pointer.version}")

    def _swap(self, champion: LoadedChampion) -> None:
        self._current = champion  # the atomic step: one reference assignment
        self.metrics.serving(champion.pointer.version)

    def _failed(self, why: str) -> ReloadOutcome:
        self.metrics.reloads.labels(result="failed").inc()
        current = self._current
        kept = f"still serving version {current.pointer.version}" if current else "no model served"
        return ReloadOutcome("failed", f"{why}; {kept}")
