"""The intercom's refusal, importable without aiortc (the panel and the service use it before
the media engine is loaded)."""

from __future__ import annotations


class IntercomError(Exception):
    """A refused request: ``status`` is the HTTP status the panel answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
