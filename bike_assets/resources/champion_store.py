"""The champion pointer as a resource (local file or GCS object, see `bike_assets.ml.pointer`)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from bike_assets.ml.pointer import ChampionPointer, read_pointer, read_text, write_pointer


class ChampionStore(dg.ConfigurableResource):  # type: ignore[misc]
    pointer_uri: str = Field(description="Local path or gs:// URI of champion.json.")

    def read(self) -> ChampionPointer | None:
        """The current champion; None if none yet. Raises `PointerError` if it is broken."""
        return read_pointer(self.pointer_uri)

    def write(self, pointer: ChampionPointer) -> None:
        """Move the pointer. On GCS the write is conditional on the generation we read, so a
        concurrent promotion makes this one fail loudly instead of silently overwriting."""
        generation: int | None = None
        if self.pointer_uri.startswith("gs://"):
            found = read_text(self.pointer_uri)
            generation = 0 if found is None else found[1]
        write_pointer(self.pointer_uri, pointer, if_generation_match=generation)
