"""The app's `Request` class: JSON bodies only, and a body that cannot be decoded is a 400.

Two gaps of Litestar's own JSON decoding are closed here, where the body is decoded (so nothing
else is caught by mistake):
- msgspec raises `RecursionError`, not a decode error, for nesting deeper than it supports
  (`{"records": [[[[...`): it used to reach the catch-all handler as a 500 with a traceback in
  the log for every such request.
- Litestar decodes any body as JSON whatever its `Content-Type`; a `text/plain` or form body is
  refused with 415 instead, so that clients learn the contract rather than rely on leniency.
"""

from __future__ import annotations

from typing import Any

from litestar import Request

from bike_serving.errors import MalformedBodyError, UnsupportedMediaTypeError

JSON_MEDIA_TYPE = "application/json"


class JsonRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        media_type = self.content_type[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            shown = f"{media_type!r}" if media_type else "no Content-Type"
            raise UnsupportedMediaTypeError(
                f"request bodies must be {JSON_MEDIA_TYPE}; got {shown}", "Content-Type"
            )
        try:
            return await super().json()
        except RecursionError:
            raise MalformedBodyError("malformed JSON body: nested too deeply") from None
